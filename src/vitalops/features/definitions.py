"""Declarative feature, cohort and label definitions, validated from YAML and hashed to a version.

A ``DatasetSpec`` is one file: the cohort (who is scored, and when), the label (what outcome
within what horizon) and the features (in order). ``load_spec`` turns every problem into an
``InvalidInput`` that names the file and the field path, e.g.
``deterioration.yaml: features[3].window: '-4h' is not a positive duration``.

Durations are written ``<number><unit>`` with unit ``m`` (minutes), ``h`` (hours), ``d`` (days)
or ``w`` (weeks). A window ``W`` covers facts with ``index_time - W < effective_at <= index_time``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from vitalops.core.ids import content_hash
from vitalops.errors import InvalidInput, NotFound
from vitalops.terminology import load_terminology

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}

#: Aggregations over a concept's numeric values in a window.
Aggregation = Literal[
    "last", "first", "min", "max", "mean", "count", "slope", "delta", "time_since_last", "exists"
]
#: Fact kinds (of the terminology's concepts) each concept-based feature may read.
FEATURE_CONCEPT_KINDS = {
    "measurement": ("vital", "lab", "observation"),
    "condition": ("condition",),
    "medication": ("medication",),
}
#: Outcome concepts ingest writes (``vitalops.ingest.extract_resources``), by fact kind.
OUTCOME_CONCEPTS = {"encounter": frozenset({"icu_stay"}), "outcome": frozenset({"death"})}
#: Encounter classes (HL7 v3 ActCode) that cohorts and utilization features speak of.
EncounterClass = Literal["IMP", "EMER", "AMB"]
#: Encounter concepts with a period that a cohort can exclude while they are in progress.
ActiveEncounterConcept = Literal["icu_stay"]
#: Cohort fields added after the first release: left out of the version while at their defaults,
#: so that definitions which do not use them keep their version.
_LATER_COHORT_FIELDS = {"exclude_active": [], "stop_after": [], "exclude_dispositions": [],
                        "exclude_transfers": False}


def parse_duration(text: str) -> timedelta:
    """The timedelta a duration such as ``12h`` or ``30d`` names; raises ValueError otherwise."""
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as '12h' or '30d'")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _positive_duration(value: str) -> str:
    if parse_duration(value) <= timedelta(0):
        raise ValueError(f"{value!r} is not a positive duration")
    return value


def _inpatient_classes() -> list[EncounterClass]:
    """The default encounter classes of cohorts and readmission labels: inpatient stays."""
    return ["IMP"]


def duration_us(text: str) -> int:
    """The duration in whole microseconds (the facts' time resolution)."""
    return int(parse_duration(text) / timedelta(microseconds=1))


class _Definition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FeatureBase(_Definition):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=80)
    #: Value used when the feature is missing; ``None`` keeps it missing (null).
    impute: float | None = None
    description: str = ""


class MeasurementFeature(_FeatureBase):
    """An aggregation of a concept's values (vital, lab, observation) in a window before the index."""

    kind: Literal["measurement"] = "measurement"
    concept: str
    agg: Aggregation
    window: str

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        return _positive_duration(value)


class AgeFeature(_FeatureBase):
    """Age in years at the index time (365.25-day years)."""

    kind: Literal["age"] = "age"


class SexFeature(_FeatureBase):
    """1.0 when the recorded administrative sex equals ``value``, 0.0 when another is recorded, else null."""

    kind: Literal["sex"] = "sex"
    value: str = "female"


class ConditionFeature(_FeatureBase):
    """1.0 when the condition's onset is known by the index time (ever, or within ``window``), else 0.0."""

    kind: Literal["condition"] = "condition"
    concept: str
    window: str | None = None

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str | None) -> str | None:
        return None if value is None else _positive_duration(value)


class MedicationFeature(_FeatureBase):
    """``active``: 1.0 when an order of the concept is active at the index time, else 0.0;
    ``count``: the number of orders starting within ``window``."""

    kind: Literal["medication"] = "medication"
    concept: str
    mode: Literal["active", "count"] = "active"
    window: str | None = None

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str | None) -> str | None:
        return None if value is None else _positive_duration(value)

    @model_validator(mode="after")
    def _window_for_count(self) -> MedicationFeature:
        if self.mode == "count" and self.window is None:
            raise ValueError("a medication count needs a window")
        return self


class UtilizationFeature(_FeatureBase):
    """The number of encounters of ``encounter_class`` starting within ``window`` before the index,
    not counting the index encounter."""

    kind: Literal["utilization"] = "utilization"
    encounter_class: EncounterClass
    window: str

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        return _positive_duration(value)


class LengthOfStayFeature(_FeatureBase):
    """Hours from the index encounter's start, as known at the index time, to the index time."""

    kind: Literal["length_of_stay"] = "length_of_stay"


FeatureDef = Annotated[
    MeasurementFeature
    | AgeFeature
    | SexFeature
    | ConditionFeature
    | MedicationFeature
    | UtilizationFeature
    | LengthOfStayFeature,
    Field(discriminator="kind"),
]


class CriteriaDef(_Definition):
    """Conditions on an index row; every stated condition must hold for the criteria to match."""

    min_age: float | None = Field(default=None, ge=0)
    max_age: float | None = Field(default=None, ge=0)
    sites: list[str] | None = None

    @model_validator(mode="after")
    def _age_range(self) -> CriteriaDef:
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age is greater than max_age")
        return self


class OutcomeRef(_Definition):
    """A fact that counts as the outcome: an encounter concept (``icu_stay``) or an outcome (``death``)."""

    kind: Literal["encounter", "outcome"]
    concept: str


class CohortDef(_Definition):
    """When predictions are made. ``every``: at admission + k * ``every`` while the stay lasts
    (before discharge); ``discharge``: at each discharge. The cohort may use an encounter's final
    period (it is the sampling design); features never do.

    Exclusions: ``exclude_active`` drops index times at which an encounter of the concept (an ICU
    stay) is in progress as known at that time (started by T, not ended by T in the version
    current at T); ``stop_after`` (``every`` only) ends a stay's rows at its first such event at
    or after admission (an ICU transfer, death), as finally recorded; ``exclude_dispositions``
    (``discharge`` only) drops discharges whose recorded disposition code (HL7
    discharge-disposition, such as ``exp`` for death) is listed; ``exclude_transfers``
    (``discharge`` only) drops an encounter's end while another encounter of the cohort's classes
    is still in progress (a move within the hospital, such as from the ICU back to the ward)."""

    schedule: Literal["every", "discharge"]
    every: str | None = None
    encounter_classes: list[EncounterClass] = Field(default_factory=_inpatient_classes, min_length=1)
    include: CriteriaDef = Field(default_factory=CriteriaDef)
    exclude: CriteriaDef | None = None
    exclude_active: list[ActiveEncounterConcept] = Field(default_factory=list)
    stop_after: list[OutcomeRef] = Field(default_factory=list)
    exclude_dispositions: list[str] = Field(default_factory=list)
    exclude_transfers: bool = False

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: str | None) -> str | None:
        return None if value is None else _positive_duration(value)

    @model_validator(mode="after")
    def _every_needs_interval(self) -> CohortDef:
        if self.schedule == "every" and self.every is None:
            raise ValueError("schedule 'every' needs an interval in 'every', e.g. '4h'")
        if self.schedule != "every" and self.stop_after:
            raise ValueError("stop_after applies to schedule 'every' (a discharge is scored after its events)")
        if self.schedule != "discharge" and (self.exclude_dispositions or self.exclude_transfers):
            raise ValueError(
                "exclude_dispositions and exclude_transfers apply to schedule 'discharge' (choosing stays "
                "by how they ended would select on the outcome)"
            )
        return self


class LabelDef(_Definition):
    """``outcome``: 1 when any of ``outcomes`` starts within (T + start, T + horizon];
    ``readmission``: 1 when an encounter of ``encounter_classes`` starts within that horizon."""

    kind: Literal["outcome", "readmission"]
    outcomes: list[OutcomeRef] = Field(default_factory=list)
    encounter_classes: list[EncounterClass] = Field(default_factory=_inpatient_classes)
    start: str = "0h"
    horizon: str

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        if parse_duration(value) < timedelta(0):
            raise ValueError(f"{value!r}: the label horizon overlaps its index (start must not be negative)")
        return value

    @field_validator("horizon")
    @classmethod
    def _check_horizon(cls, value: str) -> str:
        return _positive_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> LabelDef:
        if parse_duration(self.horizon) <= parse_duration(self.start):
            raise ValueError("the label horizon ends before it starts")
        if self.kind == "outcome" and not self.outcomes:
            raise ValueError("an outcome label needs at least one entry in 'outcomes'")
        return self


class DatasetSpec(_Definition):
    """A training-set definition: cohort, label and features, with a content version."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    description: str = ""
    cohort: CohortDef
    label: LabelDef
    features: list[FeatureDef] = Field(min_length=1)

    _terminology_version: str = PrivateAttr(default="")
    _source: str = PrivateAttr(default="<spec>")

    @model_validator(mode="after")
    def _unique_names(self) -> DatasetSpec:
        seen: set[str] = set()
        for position, feature in enumerate(self.features):
            if feature.name in seen:
                raise ValueError(f"features[{position}].name: {feature.name!r} is declared twice")
            seen.add(feature.name)
        return self

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @cached_property
    def compiled(self) -> dict[str, Any]:
        """A cache of compiled forms of this spec object (such as the online kernel's plan); never
        part of the spec's content, version or equality."""
        return {}

    @property
    def source(self) -> str:
        """The file the spec was loaded from (for error messages)."""
        return self._source

    @property
    def version(self) -> str:
        """sha256 of the canonical definitions and the terminology version they were checked against."""
        definitions = self.model_dump(mode="json")
        cohort = definitions["cohort"]
        for name, default in _LATER_COHORT_FIELDS.items():
            if cohort.get(name) == default:
                del cohort[name]
        return content_hash({"definitions": definitions, "terminology": self._terminology_version})


class Terminology(Protocol):
    """What definitions need of the terminology: a concept lookup raising NotFound, and a version."""

    def concept(self, name: str) -> Any: ...


def _field_path(loc: tuple[Any, ...], tags: set[str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in tags:  # the discriminator's branch name is not a field the author wrote
            continue
        else:
            path += ("." if path else "") + str(part)
    return path or "<root>"


def _branch_tags() -> set[str]:
    return {"measurement", "age", "sex", "condition", "medication", "utilization", "length_of_stay"}


def spec_from_dict(document: Any, *, source: str, terminology: Terminology | None = None) -> DatasetSpec:
    """Validate a parsed definition document; raises InvalidInput naming ``source`` and the field."""
    if not isinstance(document, dict):
        raise InvalidInput(f"{source}: the document must be a mapping")
    try:
        spec = DatasetSpec.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidInput(
            f"{source}: {_field_path(tuple(error['loc']), _branch_tags())}: {message}",
            details={"file": source, "field": _field_path(tuple(error["loc"]), _branch_tags())},
        ) from None
    if terminology is not None:
        _check_concepts(spec, source, terminology)
        spec._terminology_version = str(getattr(terminology, "version", ""))
    spec._source = source
    return spec


def _check_concepts(spec: DatasetSpec, source: str, terminology: Terminology) -> None:
    for position, feature in enumerate(spec.features):
        concept = getattr(feature, "concept", None)
        if concept is None:
            continue
        field = f"features[{position}].concept"
        try:
            kind = terminology.concept(concept).kind
        except NotFound:
            raise InvalidInput(
                f"{source}: {field}: unknown concept {concept!r}", details={"file": source, "field": field}
            ) from None
        allowed = FEATURE_CONCEPT_KINDS[feature.kind]
        if kind not in allowed:
            raise InvalidInput(
                f"{source}: {field}: {concept!r} is a {kind} concept; a {feature.kind} feature needs "
                f"{' or '.join(allowed)}",
                details={"file": source, "field": field},
            )
    events = [(f"label.outcomes[{position}]", outcome) for position, outcome in enumerate(spec.label.outcomes)]
    events += [(f"cohort.stop_after[{position}]", event) for position, event in enumerate(spec.cohort.stop_after)]
    for where, outcome in events:
        if outcome.concept not in OUTCOME_CONCEPTS[outcome.kind]:
            field = f"{where}.concept"
            raise InvalidInput(
                f"{source}: {field}: unknown {outcome.kind} outcome {outcome.concept!r} "
                f"(known: {', '.join(sorted(OUTCOME_CONCEPTS[outcome.kind]))})",
                details={"file": source, "field": field},
            )


def load_spec(path: Path, *, terminology: Terminology | None = None) -> DatasetSpec:
    """Read and validate a definition file. Concepts are checked against ``terminology`` (the
    installed terminology when omitted). Raises InvalidInput naming the file and the field."""
    path = Path(path)
    if terminology is None:
        terminology = load_terminology()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{path.name}: no such definition file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path.name}:{where} is not valid YAML") from None
    return spec_from_dict(document, source=path.name, terminology=terminology)
