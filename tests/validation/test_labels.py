from __future__ import annotations

from vitalops.validation.labels import group_label


def test_race_and_ethnicity_codes_read_as_names_with_their_code() -> None:
    assert group_label("race", "2106-3") == "White (2106-3)"
    assert group_label("ethnicity", "2135-2") == "Hispanic or Latino (2135-2)"
    assert group_label("race", "9999-9") == "9999-9"
    assert group_label("sex", "female") == "female"
    assert group_label("race", None) == "unknown"
