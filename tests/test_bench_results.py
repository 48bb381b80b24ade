"""bench/_results.py: figures are written, compared with the committed ones, and a fall of over 20% is flagged."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

MODULE = Path(__file__).resolve().parents[1] / "bench" / "_results.py"


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_results_under_test", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results.json")
    return module


def _commit(folder: Path) -> None:
    subprocess.run(["git", "-C", str(folder), "add", "results.json"], check=True)
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm",
                    "accept"], check=True)


def test_a_figure_is_compared_with_the_committed_value(results: ModuleType, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert results.record("x.ratio", 2.0, better="higher", unit="x", note="n") is False
    assert "no accepted value yet" in capsys.readouterr().out
    _commit(tmp_path)
    assert results.record("x.ratio", 1.7, better="higher", unit="x", note="n") is False  # 15% lower: within 20%
    assert results.record("x.ratio", 1.5, better="higher", unit="x", note="n") is True
    out = capsys.readouterr().out
    assert "accepted 2 (0.75x as good) FELL BY MORE THAN 20%" in out
    stored = json.loads((tmp_path / "results.json").read_text())["figures"]["x.ratio"]
    assert stored["value"] == 1.5 and stored["better"] == "higher" and "cores" in stored["machine"]


def test_lower_is_better_and_the_summary(results: ModuleType, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    results.record("y.seconds", 10.0, better="lower", unit="s", note="n")
    _commit(tmp_path)
    assert results.record("y.seconds", 12.4, better="lower", unit="s", note="n") is False
    assert results.record("y.seconds", 12.6, better="lower", unit="s", note="n") is True
    assert results.summary() == 0 and results.summary(strict=True) == 1
    assert "1 of 1 figures fell by more than 20%" in capsys.readouterr().out
    with pytest.raises(ValueError):
        results.record("y.seconds", 1.0, better="faster", unit="s", note="n")
