"""A missing optional dependency is a MissingExtra naming the extra to install, never an ImportError."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from vitalops.artifacts.formats import load_model
from vitalops.core.extras import EXTRAS, import_extra
from vitalops.db import Database
from vitalops.errors import ConfigError, MissingExtra
from vitalops.training.estimators import build_estimator

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _absent(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail as it does when the package is not installed."""
    for name in list(sys.modules):
        if name == module or name.startswith(f"{module}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_a_missing_module_names_its_extra(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    _absent(monkeypatch, module)
    with pytest.raises(MissingExtra) as raised:
        import_extra(module)
    extra = EXTRAS[module][0]
    assert f"pip install 'vitalops[{extra}]'" in raised.value.message
    assert raised.value.details == {"module": module, "extra": extra}
    assert isinstance(raised.value, ConfigError) and raised.value.exit_code == 2
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_every_extra_named_in_code_is_declared_and_all_holds_them() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    named = {extra for extra, _ in EXTRAS.values()}
    (everything,) = declared["all"]
    assert everything.startswith("vitalops[")
    in_all = set(everything.removeprefix("vitalops[").removesuffix("]").split(","))
    assert named <= in_all and in_all == set(declared) - {"all", "dev"}
    assert "vitalops[all]" in declared["dev"]


def test_estimators_and_artifacts_of_a_missing_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("lightgbm", "xgboost", "onnxruntime"):
        _absent(monkeypatch, module)
    for estimator, extra in (("lightgbm", "lightgbm"), ("xgboost", "xgboost")):
        with pytest.raises(MissingExtra, match=rf"vitalops\[{extra}\]"):
            build_estimator(estimator, {}, seed=1)
    for flavor, extra in (("lightgbm", "lightgbm"), ("xgboost", "xgboost"), ("onnx", "onnx")):
        with pytest.raises(MissingExtra, match=rf"vitalops\[{extra}\]"):
            load_model(b"not read", flavor)


def test_postgresql_without_its_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    _absent(monkeypatch, "psycopg")
    with pytest.raises(MissingExtra, match=r"vitalops\[postgres\]"):
        Database("postgresql://vitalops@localhost/vitalops")


def test_the_cli_says_which_extra_and_exits_2(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _absent(monkeypatch, "distributed")
    result = cli("dataset", "build", "spec.yaml", str(tmp_path / "out"), "--engine", "dask", "--json")
    assert result.exit_code == 2
    assert result.json()["error"]["code"] == "missing_extra"
    assert "pip install 'vitalops[dask]'" in result.json()["error"]["message"]
    assert "Traceback" not in result.stdout + result.stderr
