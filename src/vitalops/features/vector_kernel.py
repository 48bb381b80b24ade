"""The point-in-time kernel for a few index rows of one patient, in plain Python.

``vitalops.features.engine`` (DuckDB) serves training sets; opening a DuckDB connection and
planning its query costs tens of milliseconds, too much for one bedside vector. This module
applies the same rules to one patient's few facts directly, and
``tests/features/test_vector_kernel.py`` holds it to the DuckDB kernel's values bit for bit on
random patients and times. The rules, as in ``engine`` and ``facts_view``:

* a fact counts at T when ``effective_at <= T``, ``known_at <= T``, its status is not
  ``entered-in-error`` and its resource version is the one current at T
  (``vitalops.lake.versions``: whole-number version ids in numeric order, each version known no
  earlier than the one before);
* windows hold facts with ``T - W < effective_at``; first/last pick by ``(effective_at, fact_id)``;
  mean and slope come from ``ordered_aggregates`` in that order;
* a value that is not finite is missing; imputation, when declared, fills what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vitalops.features.definitions import (
    AgeFeature,
    ConditionFeature,
    DatasetSpec,
    LengthOfStayFeature,
    MeasurementFeature,
    MedicationFeature,
    SexFeature,
    UtilizationFeature,
    duration_us,
)
from vitalops.features.engine import ATTRIBUTE_SCHEMA, DEMOGRAPHIC_CONCEPTS, INDEX_SCHEMA, feature_schema
from vitalops.features.facts_view import (
    ENCOUNTER_CONCEPT,
    ENGINE_COLUMNS,
    EXCLUDED_STATUSES,
    US_PER_HOUR,
    US_PER_YEAR,
)
from vitalops.features.ordered_aggregates import mean_of, slope_of
from vitalops.lake.schema import with_all_columns
from vitalops.lake.versions import VersionKey, VersionTimes, version_intervals

_TIMES = ("effective_at", "effective_end", "known_at", "issued_at")


@dataclass(slots=True)
class Fact:
    """One fact with integer times (epoch microseconds) and the end of its version's validity.

    Treated as immutable, but not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, which made building the facts most of an online vector's time."""

    fact_id: str
    patient_key: str
    site: str | None
    kind: str
    concept: str | None
    value_num: float | None
    value_code: str | None
    encounter_key: str | None
    source_id: str
    eff_us: int
    end_us: int | None
    known_us: int
    superseded_us: int

    def visible_at(self, moment_us: int) -> bool:
        """Effective and known by ``moment_us``, and of the resource version current then."""
        return self.eff_us <= moment_us and self.known_us <= moment_us and self.superseded_us > moment_us


def facts_from_table(facts: pa.Table) -> list[Fact]:
    """The facts of a FACTS_SCHEMA table (at least ENGINE_COLUMNS) with their validity intervals
    (``vitalops.lake.versions``), without those whose status never counts."""
    facts = with_all_columns(facts).select(list(ENGINE_COLUMNS))
    columns: dict[str, list[Any]] = {}
    for name in ENGINE_COLUMNS:
        column = facts.column(name)
        if name in _TIMES:
            column = column.cast(pa.int64())
        columns[name] = column.to_pylist()
    return facts_from_columns(columns)


def facts_from_columns(columns: Mapping[str, Sequence[Any]]) -> list[Fact]:
    """``facts_from_table`` of facts held as Python lists (at least ENGINE_COLUMNS, times in epoch
    microseconds), as ``vitalops.ingest.fact_rows.build_fact_rows`` assembles a prefetch's."""
    own: dict[VersionKey, VersionTimes] = {}
    keys = list(zip(columns["source_type"], columns["source_id"], columns["source_version"], strict=True))
    for key, known, issued in zip(keys, columns["known_at"], columns["issued_at"], strict=True):
        first = known if issued is None else issued
        earlier = own.get(key)
        if earlier is None:
            own[key] = (first, known)
        elif first < earlier[0] or known < earlier[1]:
            own[key] = (min(first, earlier[0]), min(known, earlier[1]))
    intervals = version_intervals(own)
    rows: list[Fact] = []
    append = rows.append
    # One pass over the columns side by side (zip), each Fact built from positional arguments:
    # indexing a dozen lists per fact made this most of the kernel's time on a prefetch.
    for (
        key, status, fact_id, patient, site, kind, concept, value_num, value_code, encounter, eff_us, end_us,
        known, issued,
    ) in zip(
        keys, columns["status"], columns["fact_id"], columns["patient_key"], columns["site"], columns["kind"],
        columns["concept"], columns["value_num"], columns["value_code"], columns["encounter_key"],
        columns["effective_at"], columns["effective_end"], columns["known_at"], columns["issued_at"], strict=True,
    ):
        if status is not None and status in EXCLUDED_STATUSES:
            continue
        version_known_us, superseded_us, is_first = intervals[key]
        # the fact's own time (issued for a first version) where it was raised above its version's
        fact_own = issued if is_first and issued is not None else known
        append(
            Fact(
                fact_id, patient, site, kind, concept, value_num, value_code, encounter, key[1], eff_us, end_us,
                fact_own if fact_own > version_known_us else version_known_us, superseded_us,
            )
        )
    return rows


@dataclass
class _Moment:
    """What one index row sees: its time, encounter, and the visible facts by bucket."""

    t_us: int
    encounter_key: str | None
    measurements: dict[str, list[Fact]] = field(default_factory=dict)
    demographics: dict[str, list[Fact]] = field(default_factory=dict)
    conditions: dict[str, list[Fact]] = field(default_factory=dict)
    medications: dict[str, list[Fact]] = field(default_factory=dict)
    encounters: list[Fact] = field(default_factory=list)
    attributes: dict[str, Any] | None = None


FeatureFunction = Callable[[_Moment], float | None]


def _flag(hit: bool) -> float:
    return 1.0 if hit else 0.0


def _measurement(feature: MeasurementFeature) -> FeatureFunction:
    window_us, concept, agg = duration_us(feature.window), feature.concept, feature.agg

    def compute(moment: _Moment) -> float | None:
        since = moment.t_us - window_us
        facts = [f for f in moment.measurements.get(concept, ()) if f.eff_us > since]  # ordered
        if agg == "count":
            return float(len(facts))
        if agg == "exists":
            return _flag(bool(facts))
        if agg == "time_since_last":
            return (moment.t_us - max(f.eff_us for f in facts)) / US_PER_HOUR if facts else None
        numeric = [(f.eff_us, f.value_num) for f in facts if f.value_num is not None]
        if not numeric:
            return None
        values = [value for _, value in numeric]
        if agg == "last":
            return values[-1]
        if agg == "first":
            return values[0]
        if agg == "min":
            return min(values)
        if agg == "max":
            return max(values)
        if agg == "mean":
            return mean_of(values)
        if agg == "slope":
            return slope_of([eff_us for eff_us, _ in numeric], values, moment.t_us)
        return values[-1] - values[0] if len(values) >= 2 else None  # delta

    return compute


def _latest(facts: Iterable[Fact], pick: Callable[[Fact], Any]) -> Any:
    """``arg_max(pick, (known_at, fact_id))`` over facts whose picked value is not null."""
    best: tuple[int, str] | None = None
    chosen = None
    for fact in facts:
        value = pick(fact)
        if value is not None and (best is None or (fact.known_us, fact.fact_id) > best):
            best, chosen = (fact.known_us, fact.fact_id), value
    return chosen


def _attributes(moment: _Moment) -> dict[str, Any]:
    """Sex, age, race and ethnicity as recorded by the moment (computed once per moment)."""
    if moment.attributes is not None:
        return moment.attributes
    names = DEMOGRAPHIC_CONCEPTS
    birth = _latest(moment.demographics.get(names["birth"], ()), lambda f: f.eff_us)
    moment.attributes = {
        "attr_sex": _latest(moment.demographics.get(names["sex"], ()), lambda f: f.value_code),
        "attr_age": None if birth is None else (moment.t_us - birth) / US_PER_YEAR,
        "attr_race": _latest(moment.demographics.get(names["race"], ()), lambda f: f.value_code),
        "attr_ethnicity": _latest(moment.demographics.get(names["ethnicity"], ()), lambda f: f.value_code),
    }
    return moment.attributes


def _condition(feature: ConditionFeature) -> FeatureFunction:
    window_us = None if feature.window is None else duration_us(feature.window)

    def compute(moment: _Moment) -> float | None:
        facts = moment.conditions.get(feature.concept, ())
        if window_us is None:
            return _flag(bool(facts))
        return _flag(any(f.eff_us > moment.t_us - window_us for f in facts))

    return compute


def _medication(feature: MedicationFeature) -> FeatureFunction:
    window_us = duration_us(feature.window or "0h")

    def compute(moment: _Moment) -> float | None:
        facts = moment.medications.get(feature.concept, ())
        if feature.mode == "active":
            return _flag(any(f.end_us is None or f.end_us > moment.t_us for f in facts))
        return float(len({f.source_id for f in facts if f.eff_us > moment.t_us - window_us}))

    return compute


def _utilization(feature: UtilizationFeature) -> FeatureFunction:
    window_us = duration_us(feature.window)

    def compute(moment: _Moment) -> float | None:
        since = moment.t_us - window_us
        return float(len({
            f.source_id for f in moment.encounters
            if f.encounter_key != moment.encounter_key and f.value_code == feature.encounter_class
            and f.eff_us > since
        }))

    return compute


def _length_of_stay(moment: _Moment) -> float | None:
    if moment.encounter_key is None:
        return None
    starts = [f.eff_us for f in moment.encounters if f.encounter_key == moment.encounter_key]
    return (moment.t_us - min(starts)) / US_PER_HOUR if starts else None


def _feature_function(feature: Any) -> FeatureFunction:
    if isinstance(feature, MeasurementFeature):
        return _measurement(feature)
    if isinstance(feature, AgeFeature):
        return lambda moment: _attributes(moment)["attr_age"]
    if isinstance(feature, SexFeature):
        def sex(moment: _Moment) -> float | None:
            recorded = _attributes(moment)["attr_sex"]
            return None if recorded is None else _flag(recorded == feature.value)
        return sex
    if isinstance(feature, ConditionFeature):
        return _condition(feature)
    if isinstance(feature, MedicationFeature):
        return _medication(feature)
    if isinstance(feature, UtilizationFeature):
        return _utilization(feature)
    if isinstance(feature, LengthOfStayFeature):
        return _length_of_stay
    raise TypeError(f"no kernel for feature kind {type(feature).__name__}")


@dataclass(frozen=True)
class VectorPlan:
    """A spec compiled for the vector kernel: one function per feature, and the concepts read."""

    names: tuple[str, ...]
    functions: tuple[FeatureFunction, ...]
    imputations: tuple[float | None, ...]
    measurement_concepts: frozenset[str]


def compile_spec(spec: DatasetSpec) -> VectorPlan:
    """The spec's plan, compiled once per spec object and kept on it."""
    plan = spec.compiled.get("vector_plan")
    if plan is None:
        plan = VectorPlan(
            names=tuple(spec.feature_names),
            functions=tuple(_feature_function(feature) for feature in spec.features),
            imputations=tuple(feature.impute for feature in spec.features),
            measurement_concepts=frozenset(
                f.concept for f in spec.features if isinstance(f, MeasurementFeature)
            ),
        )
        spec.compiled["vector_plan"] = plan
    return plan


def _moment(facts: Iterable[Fact], plan: VectorPlan, t_us: int, encounter_key: str | None) -> _Moment:
    moment = _Moment(t_us, encounter_key)
    measured, measurements = plan.measurement_concepts, moment.measurements
    for fact in facts:
        # Fact.visible_at, inline: this loop runs once per fact of the prefetch
        if fact.eff_us > t_us or fact.known_us > t_us or fact.superseded_us <= t_us:
            continue
        kind, concept = fact.kind, fact.concept
        if concept in measured and kind != "outcome":
            measurements.setdefault(concept, []).append(fact)
        if kind == "demographic":
            moment.demographics.setdefault(concept or "", []).append(fact)
        elif kind == "condition":
            moment.conditions.setdefault(concept or "", []).append(fact)
        elif kind == "medication":
            moment.medications.setdefault(concept or "", []).append(fact)
        elif kind == "encounter" and concept == ENCOUNTER_CONCEPT:
            moment.encounters.append(fact)
    for ordered in moment.measurements.values():
        ordered.sort(key=lambda f: (f.eff_us, f.fact_id))
    return moment


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def vector_at(
    facts: list[Fact], plan: VectorPlan, t_us: int, encounter_key: str | None, *, impute: bool = True
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """(subgroup attributes, feature vector) at ``t_us`` from one patient's ``facts``."""
    moment = _moment(facts, plan, t_us, encounter_key)
    vector: dict[str, float | None] = {}
    for name, function, fill in zip(plan.names, plan.functions, plan.imputations, strict=True):
        value = _finite(function(moment))
        vector[name] = float(fill) if value is None and impute and fill is not None else value
    return _attributes(moment), vector


def current_encounter(facts: list[Fact], at_us: int) -> str | None:
    """The encounter in progress at ``at_us`` as known then: inpatient first, latest start first."""
    best: tuple[int, int, str] | None = None
    chosen = None
    for fact in facts:
        if fact.kind != "encounter" or fact.concept != ENCOUNTER_CONCEPT or not fact.visible_at(at_us):
            continue
        if fact.end_us is not None and fact.end_us < at_us:
            continue
        rank = -1 if fact.value_code is None else int(fact.value_code == "IMP")
        key = (rank, fact.eff_us, fact.fact_id)
        if best is None or key > best:
            best, chosen = key, fact.encounter_key
    return chosen


def compute_features_small(facts: pa.Table, index: pa.Table, spec: DatasetSpec, *, impute: bool = True) -> pa.Table:
    """``engine.compute_features`` for small inputs: the same table, computed without DuckDB."""
    plan = compile_spec(spec)
    index = index.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
    by_patient: dict[str, list[Fact]] = {}
    for fact in facts_from_table(facts):
        by_patient.setdefault(fact.patient_key, []).append(fact)
    times = index.column("index_time").cast(pa.int64()).to_pylist()
    rows = []
    for patient, t_us, encounter in zip(
        index.column("patient_key").to_pylist(), times, index.column("encounter_key").to_pylist(), strict=True
    ):
        attributes, vector = vector_at(by_patient.get(patient, []), plan, t_us, encounter, impute=impute)
        rows.append({**attributes, **vector})
    columns = [index.column(name) for name in INDEX_SCHEMA.names]
    schema = feature_schema(spec)
    for name in [*ATTRIBUTE_SCHEMA.names, *spec.feature_names]:
        columns.append(pa.array([row[name] for row in rows], type=schema.field(name).type))
    return pa.Table.from_arrays(columns, schema=schema)
