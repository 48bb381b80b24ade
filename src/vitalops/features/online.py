"""The online path: one patient's feature vector at a moment, from the facts store or straight
from FHIR resources (a CDS Hooks prefetch), with the same definitions as the offline builder.

The vector comes from ``vitalops.features.vector_kernel``, the point-in-time kernel for a few
facts in plain Python (no DuckDB connection per call; the spec is compiled once per spec object),
which a property test holds bit-identical to the DuckDB kernel that builds training sets.

The index row is the moment ``at`` and the patient's current encounter as known at ``at``: the
encounter in progress (started by ``at``, not ended before it), inpatient first, latest start
first. Pass ``encounter_key`` to name it instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vitalops.core.clock import as_utc
from vitalops.errors import InvalidInput
from vitalops.features.definitions import DatasetSpec
from vitalops.features.facts_view import ENGINE_COLUMNS
from vitalops.features.partitions import open_facts
from vitalops.features.vector_kernel import (
    compile_spec,
    current_encounter,
    facts_from_columns,
    facts_from_table,
    vector_at,
)
from vitalops.ingest.normalize import resources_to_facts
from vitalops.ingest.pseudonym import Pseudonymizer
from vitalops.terminology import Terminology

FeatureVector = dict[str, float | None]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(moment: datetime) -> int:
    delta = as_utc(moment) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def vector_from_facts(
    facts: pa.Table | Mapping[str, Sequence[Any]],
    spec: DatasetSpec,
    patient_key: str,
    *,
    at: datetime,
    encounter_key: str | None = None,
) -> FeatureVector:
    """The feature vector of ``patient_key`` at ``at`` from ``facts`` (all of that patient's facts,
    or at least all known by ``at``): a FACTS_SCHEMA table, or its Python columns as a
    ``NormalizeResult`` holds a prefetch's (``facts_for_kernel``); imputation applied as declared."""
    at_us = _epoch_us(at)
    every = facts_from_table(facts) if isinstance(facts, pa.Table) else facts_from_columns(facts)
    patient_facts = [fact for fact in every if fact.patient_key == patient_key]
    encounter = encounter_key or current_encounter(patient_facts, at_us)
    _, vector = vector_at(patient_facts, compile_spec(spec), at_us, encounter)
    return vector


def features_from_store(
    spec: DatasetSpec,
    lake_root: str,
    patient_key: str,
    *,
    at: datetime,
    encounter_key: str | None = None,
    facts_version: int | None = None,
) -> FeatureVector:
    """The feature vector of ``patient_key`` at ``at`` from the facts store (latest version unless
    ``facts_version``); facts known after ``at`` are never used."""
    dataset, _ = open_facts(lake_root, facts_version)
    facts = dataset.to_table(columns=list(ENGINE_COLUMNS), filter=pc.field("patient_key") == patient_key)
    return vector_from_facts(facts, spec, patient_key, at=at, encounter_key=encounter_key)


def features_from_resources(
    spec: DatasetSpec,
    resources: list[dict[str, Any]],
    *,
    at: datetime,
    site: str,
    pseudonymizer: Pseudonymizer,
    terminology: Terminology,
    encounter_key: str | None = None,
) -> FeatureVector:
    """The feature vector at ``at`` from one patient's FHIR resources, normalized exactly as ingest
    does, without touching the lake. Known times follow ``vitalops.lake.versions`` over the
    versions given (a prefetch usually carries only the current one, which is then the first and
    known at its ``issued``); the ingest time of resources without meta.lastUpdated is ``at``.

    Raises InvalidInput when the resources yield no patient or more than one.
    """
    result = resources_to_facts(
        resources, site=site, pseudonymizer=pseudonymizer, terminology=terminology, known_at_default=as_utc(at)
    )
    patients = result.patient_keys()
    if len(patients) != 1:
        raise InvalidInput(f"the resources describe {len(patients)} patients; exactly one is needed")
    return vector_from_facts(result.facts_for_kernel, spec, patients[0], at=at, encounter_key=encounter_key)
