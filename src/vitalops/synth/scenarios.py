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
    from the change date an early-treatment protocol (a rapid-response team treating the first
    signs) blunts the warning signs: lactate no longer rises with severity or before deterioration,
    and the vital-sign and laboratory changes that precede a deterioration shrink to a quarter,
    while the deteriorations still happen as often. The population and most values are as before,
    so the scores and their estimated performance hardly move; the model's measured performance
    falls once the labels mature.

The change date is the midpoint of the simulated period (a UTC midnight).

A scenario can be placed at named sites instead, and several at once, as ``NAME@SITE`` items
separated by commas (``unit-mislabel@north,population-shift@east``): each changes only that site's
patients and feed, so the other sites are the controls. A bare ``NAME`` keeps the places above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from vitalops.errors import InvalidInput

SCENARIOS = ("unit-change", "population-shift", "protocol-change", "unit-mislabel")

#: Where a scenario named without a site happens: the ``unit-*`` ones at the first site, the
#: others (absent here) at every site.
DEFAULT_SITE = {"unit-change": 0, "unit-mislabel": 0}

#: Severity added to admissions after a population shift, in standard deviations.
POPULATION_SHIFT_SEVERITY = 0.5
#: What remains of the changes that precede a deterioration once the protocol treats them early.
PROTOCOL_WARNING_SIGNS = 0.25


@dataclass(frozen=True, slots=True)
class Scenario:
    """The effect of the chosen scenarios, as pure functions of site and time (epoch seconds).

    ``changes`` pairs each scenario with the index of the site it changes, or None for its default
    place (the first site for the ``unit-*`` scenarios, every site for the others)."""

    name: str | None
    change_at: int | None
    changes: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def choose(cls, name: str | None, start: date, end: date, sites: Sequence[str] = ()) -> Scenario:
        """The scenario ``name`` (None for none; ``NAME@SITE,...`` to place them at ``sites``);
        raises InvalidInput for an unknown scenario or site, or a site named twice."""
        if name is None:
            return cls(None, None)
        changes: list[tuple[str, int | None]] = []
        for item in name.split(","):
            scenario, _, site = item.strip().partition("@")
            if scenario not in SCENARIOS:
                raise InvalidInput(
                    f"unknown scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}",
                    details={"scenario": scenario, "valid": list(SCENARIOS)},
                )
            if not site:
                changes.append((scenario, None))
                continue
            if site not in sites:
                raise InvalidInput(f"scenario {scenario!r} is placed at a site that is not simulated",
                                   details={"field": "scenario", "sites": list(sites)})
            if any(s == sites.index(site) for _, s in changes):
                raise InvalidInput("a site can have one scenario only", details={"field": "scenario"})
            changes.append((scenario, sites.index(site)))
        midpoint = date.fromordinal((start.toordinal() + end.toordinal()) // 2)
        change_at = int(datetime(midpoint.year, midpoint.month, midpoint.day, tzinfo=UTC).timestamp())
        return cls(name, change_at, tuple(changes))

    @property
    def change_date(self) -> str | None:
        """The change date as ``YYYY-MM-DD``, or None without a scenario."""
        if self.change_at is None:
            return None
        return datetime.fromtimestamp(self.change_at, UTC).date().isoformat()

    def places(self, sites: Sequence[str]) -> dict[str, list[str]]:
        """The scenarios that change each of ``sites`` (in order; an empty list: unchanged)."""
        return {site: [name for name, _ in self.changes if self._here(name, index)] for index, site in enumerate(sites)}

    def _here(self, name: str, site_index: int) -> bool:
        for scenario, site in self.changes:
            if scenario != name:
                continue
            default = DEFAULT_SITE.get(name)
            if site == site_index or (site is None and default in (None, site_index)):
                return True
        return False

    def _after(self, name: str, site_index: int, moment: int) -> bool:
        return self.change_at is not None and moment >= self.change_at and self._here(name, site_index)

    def creatinine_in_umol(self, site_index: int, effective_at: int) -> bool:
        """Whether a creatinine result drawn at ``effective_at`` at this site is reported in umol/L."""
        return self._after("unit-change", site_index, effective_at)

    def creatinine_mislabelled(self, site_index: int, effective_at: int) -> bool:
        """Whether a creatinine result drawn at ``effective_at`` at this site is sent in umol/L labelled mg/dL."""
        return self._after("unit-mislabel", site_index, effective_at)

    def population_shifted(self, site_index: int, admitted_at: int) -> bool:
        """Whether an admission at ``admitted_at`` comes from the shifted, older and sicker population."""
        return self._after("population-shift", site_index, admitted_at)

    def lactate_signal(self, site_index: int, admitted_at: int) -> float:
        """How strongly lactate follows severity for a stay admitted at ``admitted_at`` (1 normal, 0 none)."""
        return 0.0 if self._after("protocol-change", site_index, admitted_at) else 1.0

    def warning_signs(self, site_index: int, admitted_at: int) -> float:
        """How much of the pre-deterioration change in vital signs and laboratory values a stay
        admitted at ``admitted_at`` shows (1 all of it; ``PROTOCOL_WARNING_SIGNS`` under the protocol)."""
        return PROTOCOL_WARNING_SIGNS if self._after("protocol-change", site_index, admitted_at) else 1.0
