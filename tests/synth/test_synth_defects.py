from __future__ import annotations

from pathlib import Path

from vitalops.synth import generate_hospital
from vitalops.synth.defects import DEFECT_KINDS, DEFECTS_PER_KIND


def test_defects_are_planted_only_on_request_and_deterministically(tmp_path: Path) -> None:
    clean = generate_hospital(tmp_path / "clean", patients=12, sites=["north", "east"], seed=5)
    first = generate_hospital(tmp_path / "a", patients=12, sites=["north", "east"], seed=5, defects=True)
    second = generate_hospital(tmp_path / "b", patients=12, sites=["north", "east"], seed=5, defects=True)
    assert clean.defects == {}
    assert first.defects == second.defects == dict.fromkeys(DEFECT_KINDS, DEFECTS_PER_KIND)
    for name in ("Observation.ndjson", "Condition.ndjson"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        grown = (tmp_path / "a" / name).read_bytes()
        assert grown.startswith((tmp_path / "clean" / name).read_bytes())
        assert b"-defect-" in grown and b'"north"' not in grown.split(b"\n")[-2]
