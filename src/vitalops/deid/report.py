"""What a de-identification run did: counts only, never a value."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: The one ``--dates`` mode that meets HIPAA Safe Harbor, and what each mode is (shown in output).
SAFE_HARBOR_DATES = "year"
DATE_MODE_NOTES = {
    "year": "HIPAA Safe Harbor: dates keep their year only; ages over 89 are grouped at 90",
    "shift": "not Safe Harbor: dates moved by a per-patient offset, at day precision (for expert "
             "determination or a limited data set)",
    "shift-time": "not Safe Harbor: dates moved by a per-patient offset, time of day kept (for expert "
                  "determination or a limited data set)",
}


@dataclass
class DeidReport:
    """Counts of a run. ``actions`` counts each rule application as (resource type, element path, action);
    ``skipped`` counts whole resources left out, by reason."""

    read: int = 0
    written: int = 0
    written_by_type: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    actions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dates: str = "shift"
    rules: str = ""

    def count(self, resource_type: str, element: str, action: str) -> None:
        self.actions[(resource_type, element, action)] += 1

    def action_totals(self) -> dict[str, int]:
        """Applications per action over all rules and types."""
        totals: Counter[str] = Counter()
        for (_, _, action), n in self.actions.items():
            totals[action] += n
        return dict(sorted(totals.items()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary: totals, per-type counts and per-rule counts."""
        return {
            "read": self.read,
            "written": self.written,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "written_by_type": dict(sorted(self.written_by_type.items())),
            "dates": self.dates,
            "safe_harbor_dates": self.dates == SAFE_HARBOR_DATES,
            "dates_note": DATE_MODE_NOTES.get(self.dates, ""),
            "rules": self.rules,
            "actions": self.action_totals(),
            "by_rule": [
                {"resource_type": rtype, "element": element, "action": action, "count": n}
                for (rtype, element, action), n in sorted(self.actions.items())
            ],
        }
