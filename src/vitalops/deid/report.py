"""What a de-identification run did: counts only, never a value."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


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
            "rules": self.rules,
            "actions": self.action_totals(),
            "by_rule": [
                {"resource_type": rtype, "element": element, "action": action, "count": n}
                for (rtype, element, action), n in sorted(self.actions.items())
            ],
        }
