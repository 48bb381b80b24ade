from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vitalops.errors import InvalidInput, NotFound
from vitalops.features import DEMO_SPECS, build_training_set, demo_spec_path, load_spec
from vitalops.features.definitions import parse_duration
from vitalops.terminology import load_terminology


def _document(name: str = "deterioration") -> dict:
    return yaml.safe_load(demo_spec_path(name).read_text())


def _write(tmp_path: Path, document: dict, name: str = "deterioration.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


def test_demo_definitions_load_with_distinct_versions() -> None:
    specs = [load_spec(demo_spec_path(name)) for name in DEMO_SPECS]
    assert [spec.name for spec in specs] == list(DEMO_SPECS)
    assert len({spec.version for spec in specs}) == 2
    assert specs[0].cohort.schedule == "every" and specs[1].cohort.schedule == "discharge"
    with pytest.raises(NotFound):
        demo_spec_path("sepsis")


def test_changing_a_definition_changes_the_version(tmp_path: Path) -> None:
    original = load_spec(_write(tmp_path, _document()))
    again = load_spec(_write(tmp_path, _document(), "copy.yaml"))
    assert again.version == original.version
    changed = _document()
    changed["features"][0]["window"] = "25h"
    assert load_spec(_write(tmp_path, changed)).version != original.version
    relabelled = _document()
    relabelled["label"]["horizon"] = "24h"
    assert load_spec(_write(tmp_path, relabelled)).version != original.version


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["features"][3].update(window="-4h"),
         "deterioration.yaml: features[3].window: '-4h' is not a positive duration"),
        (lambda d: d["features"][0].update(window="soon"), "deterioration.yaml: features[0].window: "),
        (lambda d: d["features"][1].update(concept="unobtainium"),
         "deterioration.yaml: features[1].concept: unknown concept 'unobtainium'"),
        (lambda d: d["features"][1].update(concept="metformin"),
         "deterioration.yaml: features[1].concept: 'metformin' is a medication concept"),
        (lambda d: d["features"][2].update(agg="median"), "deterioration.yaml: features[2].agg: "),
        (lambda d: d["label"].update(start="-2h"),
         "deterioration.yaml: label.start: '-2h': the label horizon overlaps its index"),
        (lambda d: d["label"]["outcomes"][0].update(concept="transfer"),
         "deterioration.yaml: label.outcomes[0].concept: unknown encounter outcome 'transfer'"),
        (lambda d: d["cohort"].pop("every"), "deterioration.yaml: cohort: schedule 'every' needs an interval"),
        (lambda d: d["features"].append(dict(d["features"][0])), "is declared twice"),
        (lambda d: d["cohort"]["include"].update(min_age=80, max_age=18), "min_age is greater than max_age"),
    ],
)
def test_bad_definitions_name_the_file_and_field(tmp_path: Path, edit, message: str) -> None:
    document = _document()
    edit(document)
    with pytest.raises(InvalidInput) as caught:
        load_spec(_write(tmp_path, document))
    assert message in caught.value.message


def test_unreadable_files_are_invalid_input(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match="broken.yaml: line"):
        load_spec(broken)
    with pytest.raises(InvalidInput, match="missing.yaml"):
        load_spec(tmp_path / "missing.yaml")


def test_durations() -> None:
    assert parse_duration("90m").total_seconds() == 5400
    assert parse_duration("2w").days == 14
    with pytest.raises(ValueError):
        parse_duration("4 hours")


def test_a_cohort_that_selects_nobody_is_an_error_at_build(tmp_path: Path, hospital_lake) -> None:
    document = _document()
    document["cohort"]["include"]["sites"] = ["atlantis"]
    spec = load_spec(_write(tmp_path, document, "nobody.yaml"), terminology=load_terminology())
    with pytest.raises(InvalidInput, match="nobody.yaml: cohort: selects nobody"):
        build_training_set(spec, hospital_lake.lake_root)


def test_cohort_exclusions_are_part_of_the_version(tmp_path: Path) -> None:
    document = _document()
    with_exclusions = load_spec(_write(tmp_path, document)).version
    document["cohort"].pop("stop_after")
    document["cohort"].pop("exclude_active")
    without = load_spec(_write(tmp_path, document, "without.yaml")).version
    assert without != with_exclusions
    document["cohort"].update(exclude_active=[], stop_after=[])  # stated at their defaults: the same definition
    assert load_spec(_write(tmp_path, document, "same.yaml")).version == without


def test_an_unknown_stop_after_event_names_the_field(tmp_path: Path) -> None:
    document = _document()
    document["cohort"]["stop_after"][0]["concept"] = "ward_move"
    with pytest.raises(InvalidInput, match="cohort.stop_after\\[0\\].concept: unknown encounter outcome 'ward_move'"):
        load_spec(_write(tmp_path, document))
