"""What a synthetic hospital run produced: counts, files, planted identifiers and ground truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class GroundTruthTally:
    """Running totals of the true outcomes, summarised as rates."""

    stays: int = 0
    deteriorations: int = 0
    icu_transfers: int = 0
    deaths: int = 0
    discharges_alive: int = 0
    readmissions: int = 0
    uncensored_discharges: int = 0
    uncensored_readmissions: int = 0

    def add(self, record: dict[str, Any]) -> None:
        self.stays += 1
        self.deteriorations += bool(record["deteriorated"])
        self.icu_transfers += record["event_type"] == "icu"
        self.deaths += record["died_at"] is not None
        if record["died_at"] is None:
            self.discharges_alive += 1
            self.readmissions += bool(record["readmitted_30d"])
            if not record["readmission_censored"]:
                self.uncensored_discharges += 1
                self.uncensored_readmissions += bool(record["readmitted_30d"])

    def summary(self) -> dict[str, Any]:
        return {
            "inpatient_stays": self.stays,
            "deteriorations": self.deteriorations,
            "deterioration_rate": round(self.deteriorations / self.stays, 4) if self.stays else 0.0,
            "icu_transfers": self.icu_transfers,
            "in_hospital_deaths": self.deaths,
            "live_discharges": self.discharges_alive,
            "readmissions_30d": self.readmissions,
            "readmission_rate": (round(self.readmissions / self.discharges_alive, 4) if self.discharges_alive else 0.0),
            "observed_readmission_rate": (
                round(self.uncensored_readmissions / self.uncensored_discharges, 4)
                if self.uncensored_discharges
                else 0.0
            ),
        }


@dataclass(slots=True)
class SynthSummary:
    """The result of ``generate_hospital``: counts per resource type and per site, files, truths."""

    out_dir: str
    patients: int
    sites: list[str]
    seed: int
    scenario: str | None
    change_date: str | None
    start: str
    end: str
    resources: dict[str, int] = field(default_factory=dict)
    per_site: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    planted_identifiers: int = 0
    ground_truth: dict[str, Any] = field(default_factory=dict)
    #: Feed defects planted on request, by kind (see ``vitalops.synth.defects``); not in ``resources``.
    defects: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe copy (no patient data: counts, names of files and sites, rates)."""
        return asdict(self)
