"""A version's training, re-run on fresh data: what a retraining needs, and the data it learns from.

A version trained by ``vitalops train`` (or ``train_on_dataset``) records its training spec in its
lineage (``training_spec``), with the latest index time of the rows it split (``latest_index_time``).
Retraining re-runs that spec — estimator, hyperparameters, seed, threshold rule, minimums, excluded
features, held-out sites — on a training set rebuilt point-in-time from the lake's current facts
with the feature definitions the version was built from (kept under its ``definitions_version``).

The split keeps the spec's rule: ``train_fraction`` splits the fresh rows at the same fraction of
their index times (so the boundary moves forward with the data); ``train_before`` moves forward by
the whole days the fresh rows reach beyond the version's (never backward). Rows of the plan's frozen
test set are left out, so a candidate never learns from the rows its gate judges it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from vitalops.artifacts import ArtifactStore
from vitalops.errors import NotFound
from vitalops.features.definitions import DatasetSpec
from vitalops.features.training_set import build_training_set, content_sha256
from vitalops.lake.schema import DATASET_KEY_COLUMNS
from vitalops.registry.schemas import ModelVersion
from vitalops.training.datasets import ResolvedDataset, labelled_rows, read_dataset
from vitalops.training.spec import TrainingSpec, spec_from_dict
from vitalops.training.trainer import latest_index_time


@dataclass(frozen=True)
class FreshData:
    """The spec as re-run (its split moved forward when it names a date) and the rows it learns from."""

    spec: TrainingSpec
    dataset: ResolvedDataset
    facts_version: int
    frozen_rows_left_out: int
    split: dict[str, Any]


def recorded_training_spec(version: ModelVersion) -> TrainingSpec | None:
    """The training spec ``version`` recorded, or None for a version that recorded none (registered
    from elsewhere, or trained before specs were recorded)."""
    document = version.lineage.get("training_spec")
    if not isinstance(document, dict):
        return None
    return spec_from_dict(document, source=f"the training spec recorded by {version.ref}")


def _moved_split(spec: TrainingSpec, recorded_latest: str | None, fresh_latest: str | None) -> TrainingSpec:
    if spec.split.train_before is None or recorded_latest is None or fresh_latest is None:
        return spec
    gained = datetime.fromisoformat(fresh_latest) - datetime.fromisoformat(recorded_latest)
    if gained <= timedelta(0):
        return spec
    moved: date = spec.split.train_before + timedelta(days=gained.days)
    return spec.model_copy(update={"split": spec.split.model_copy(update={"train_before": moved})})


def _without_frozen_rows(table: pa.Table, frozen: pa.Table | None) -> tuple[pa.Table, int]:
    if frozen is None or any(name not in frozen.column_names for name in DATASET_KEY_COLUMNS):
        return table, 0
    def keys(source: pa.Table) -> list[tuple[Any, ...]]:
        columns = [source.column(name).to_pylist() for name in DATASET_KEY_COLUMNS]
        return list(zip(*columns, strict=True))
    judged = set(keys(frozen))
    keep = [key not in judged for key in keys(table)]
    kept = table.filter(pa.array(keep, pa.bool_()))
    return kept, table.num_rows - kept.num_rows


def fresh_training_data(version: ModelVersion, spec: TrainingSpec, definitions: DatasetSpec, lake_root: str, *,
                        store: ArtifactStore, frozen_test_set_uri: str | None) -> FreshData:
    """The rows a retraining of ``version`` learns from, built from the lake's latest facts.

    Raises NotFound without a facts table, InvalidInput when the cohort selects nobody."""
    built = build_training_set(definitions, lake_root)
    frozen = read_dataset(store, frozen_test_set_uri)[0] if frozen_test_set_uri else None
    table, left_out = _without_frozen_rows(built.table, frozen)
    if table.num_rows == 0:
        raise NotFound(f"no rows are left to retrain {version.ref} on once its plan's frozen test set is left out")
    rows = labelled_rows(table, list(built.feature_names))
    moved = _moved_split(spec, version.lineage.get("latest_index_time"), latest_index_time(rows))
    dataset = ResolvedDataset(table, list(built.feature_names), content_sha256(table), definitions.version, None,
                              definitions=built.spec)
    return FreshData(moved, dataset, built.fingerprint.facts_version, left_out, moved.split.model_dump(mode="json"))
