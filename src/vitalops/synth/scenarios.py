"""Scenarios: a dated change in the hospital that monitoring and governance must catch.

``unit-change``
    the first site starts reporting creatinine in umol/L (value x 88.42) under the same LOINC
    code from the change date: a silent upstream change that corrupts an unconverted feature.
``unit-mislabel``
    the first site starts sending creatinine values in umol/L (value x 88.42) while the
    Observation still says mg/dL (UCUM ``mg/dL``) from the change date: a wrong label, which no
    unit conversion can repair; only the values give it away.
``population-shift``
    from the change date admissions come from older, sicker patients (admission rates rise with
    age and comorbidity, and acute severity shifts up).
``protocol-change``
    from the change date an early-treatment protocol removes lactate's signal: lactate no longer
    rises with severity or before deterioration, so a model that leaned on it degrades.

The change date is the midpoint of the simulated period (a UTC midnight).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from vitalops.errors import InvalidInput

SCENARIOS = ("unit-change", "population-shift", "protocol-change", "unit-mislabel")

#: Severity added to admissions after a population shift, in standard deviations.
POPULATION_SHIFT_SEVERITY = 0.5


@dataclass(frozen=True, slots=True)
class Scenario:
    """The effect of the chosen scenario, as pure functions of site and time (epoch seconds)."""

    name: str | None
    change_at: int | None

    @classmethod
    def choose(cls, name: str | None, start: date, end: date) -> Scenario:
        """The scenario called ``name`` (None for none); raises InvalidInput for an unknown name."""
        if name is None:
            return cls(None, None)
        if name not in SCENARIOS:
            raise InvalidInput(
                f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}",
                details={"scenario": name, "valid": list(SCENARIOS)},
            )
        midpoint = date.fromordinal((start.toordinal() + end.toordinal()) // 2)
        change_at = int(datetime(midpoint.year, midpoint.month, midpoint.day, tzinfo=UTC).timestamp())
        return cls(name, change_at)

    @property
    def change_date(self) -> str | None:
        """The change date as ``YYYY-MM-DD``, or None without a scenario."""
        if self.change_at is None:
            return None
        return datetime.fromtimestamp(self.change_at, UTC).date().isoformat()

    def _after(self, name: str, moment: int) -> bool:
        return self.name == name and self.change_at is not None and moment >= self.change_at

    def creatinine_in_umol(self, site_index: int, effective_at: int) -> bool:
        """Whether a creatinine result drawn at ``effective_at`` at this site is reported in umol/L."""
        return site_index == 0 and self._after("unit-change", effective_at)

    def creatinine_mislabelled(self, site_index: int, effective_at: int) -> bool:
        """Whether a creatinine result drawn at ``effective_at`` at this site is sent in umol/L labelled mg/dL."""
        return site_index == 0 and self._after("unit-mislabel", effective_at)

    def population_shifted(self, admitted_at: int) -> bool:
        """Whether an admission at ``admitted_at`` comes from the shifted, older and sicker population."""
        return self._after("population-shift", admitted_at)

    def lactate_signal(self, admitted_at: int) -> float:
        """How strongly lactate follows severity for a stay admitted at ``admitted_at`` (1 normal, 0 none)."""
        return 0.0 if self._after("protocol-change", admitted_at) else 1.0
