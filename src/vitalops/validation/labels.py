"""How subgroups are named for people. Race and ethnicity arrive as the OMB category codes of the
CDC Race & Ethnicity code system (urn:oid:2.16.840.1.113883.6.238, as US Core carries them); a
governance committee reads names, with the code kept beside them for traceability."""

from __future__ import annotations

RACE_NAMES = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
    "2131-1": "Other Race",
}
ETHNICITY_NAMES = {
    "2135-2": "Hispanic or Latino",
    "2186-5": "Not Hispanic or Latino",
}
_NAMES = {"race": RACE_NAMES, "ethnicity": ETHNICITY_NAMES}


def group_label(attribute: str, group: str | None) -> str:
    """``group`` of ``attribute`` as people read it: "White (2106-3)" for a known code, else as is."""
    if group is None:
        return "unknown"
    name = _NAMES.get(attribute, {}).get(group)
    return f"{name} ({group})" if name else group
