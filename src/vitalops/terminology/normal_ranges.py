"""Adult reference ranges per concept, in each concept's canonical unit (``data/normal_ranges.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class NormalRange:
    concept: str
    low: float
    high: float
    unit: str

    def nearest_normal(self, value: float) -> float | None:
        """The closest value inside the range, or None when ``value`` is already inside it."""
        if value < self.low:
            return self.low
        if value > self.high:
            return self.high
        return None


@cache
def normal_ranges() -> dict[str, NormalRange]:
    """Every shipped range by concept name."""
    text = resources.files("vitalops.terminology").joinpath("data/normal_ranges.yaml").read_text(encoding="utf-8")
    return {
        concept: NormalRange(concept, float(entry["low"]), float(entry["high"]), str(entry["unit"]))
        for concept, entry in (yaml.safe_load(text) or {}).items()
    }
