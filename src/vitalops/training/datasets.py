"""Training rows: resolve a spec's dataset, drop censored rows, split in time and by site."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vitalops.artifacts import ArtifactStore
from vitalops.core.ids import sha256_hex
from vitalops.errors import InvalidInput
from vitalops.features.definitions import DatasetSpec
from vitalops.features.training_set import read_training_set
from vitalops.lake.schema import DATASET_ATTRIBUTE_COLUMNS, DATASET_KEY_COLUMNS, DATASET_LABEL_COLUMNS

ARTIFACT_URI_PREFIX = "artifact:"
_NON_FEATURES = set(DATASET_KEY_COLUMNS) | set(DATASET_LABEL_COLUMNS) | set(DATASET_ATTRIBUTE_COLUMNS)


@dataclass(frozen=True)
class ResolvedDataset:
    """A training set with the lineage a version records."""

    table: pa.Table
    feature_names: list[str]
    fingerprint: str
    definitions_version: str
    uri: str | None
    #: The feature definitions the rows were built from, when built here (registered with the version).
    definitions: DatasetSpec | None = None


@dataclass(frozen=True)
class Rows:
    """Labelled rows ready to fit or score: features (float64, NaN = missing), outcomes, attributes
    and each row's pseudonymous ``patient_key`` (None for a dataset without one): a patient scored
    at several times has several rows, and statistics over them resample patients."""

    features: np.ndarray
    labels: np.ndarray
    sites: np.ndarray
    index_times: np.ndarray
    attributes: dict[str, np.ndarray]
    patient_keys: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask: np.ndarray) -> Rows:
        return Rows(
            self.features[mask],
            self.labels[mask],
            self.sites[mask],
            self.index_times[mask],
            {name: values[mask] for name, values in self.attributes.items()},
            None if self.patient_keys is None else self.patient_keys[mask],
        )


def feature_columns(table: pa.Table) -> list[str]:
    """The table's feature columns in order: every column that is not a key, label or attribute."""
    return [name for name in table.column_names if name not in _NON_FEATURES]


def labelled_rows(table: pa.Table, feature_names: list[str]) -> Rows:
    """Rows with a known label (censored rows dropped). InvalidInput names any missing column."""
    missing = [name for name in ["label", "site", "index_time", *feature_names] if name not in table.column_names]
    if missing:
        raise InvalidInput(f"the dataset lacks columns: {', '.join(missing)}", details={"missing": missing})
    known = table.filter(pa.compute.is_valid(table.column("label")))
    features = (
        np.column_stack(
            [known.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in feature_names]
        )
        if feature_names
        else np.empty((known.num_rows, 0))
    )
    attributes = {
        name.removeprefix("attr_"): np.asarray(known.column(name).to_pylist(), dtype=object)
        for name in DATASET_ATTRIBUTE_COLUMNS
        if name in known.column_names
    }
    index_times = known.column("index_time").cast(pa.timestamp("us", tz="UTC")).to_numpy(zero_copy_only=False)
    return Rows(
        features=features,
        labels=known.column("label").to_numpy(zero_copy_only=False).astype(np.int64),
        sites=np.asarray(known.column("site").to_pylist(), dtype=object),
        index_times=index_times.astype("datetime64[us]"),
        attributes=attributes,
        patient_keys=(
            np.asarray(known.column("patient_key").to_pylist(), dtype=object)
            if "patient_key" in known.column_names
            else None
        ),
    )


def split_rows(
    rows: Rows, *, train_before: Any, train_fraction: float | None, external_sites: list[str]
) -> tuple[Rows, Rows, Rows]:
    """(training, temporal test, external) rows. External rows are every row of the held-out sites."""
    external = np.isin(rows.sites, np.asarray(external_sites, dtype=object))
    if train_before is not None:
        cut = np.datetime64(
            datetime(train_before.year, train_before.month, train_before.day, tzinfo=UTC).replace(tzinfo=None),
            "us",
        )
    else:
        internal_times = np.sort(rows.index_times[~external])
        if internal_times.shape[0] == 0:
            raise InvalidInput("every row belongs to a held-out site; nothing is left to train on")
        cut = internal_times[
            min(
                int(np.floor(train_fraction * internal_times.shape[0])),
                internal_times.shape[0] - 1,
            )
        ]
    early = rows.index_times < cut
    return rows.subset(early & ~external), rows.subset(~early & ~external), rows.subset(external)


def table_to_parquet(table: pa.Table) -> bytes:
    """Deterministic Parquet bytes of ``table`` (no timestamps in the file, fixed settings)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=False, store_schema=True)
    return sink.getvalue()


def freeze_dataset(store: ArtifactStore, table: pa.Table) -> tuple[str, str]:
    """Store ``table`` content-addressed; returns (uri, fingerprint) for a frozen test set."""
    digest = store.put(table_to_parquet(table))
    return f"{ARTIFACT_URI_PREFIX}{digest}", digest


def read_dataset(store: ArtifactStore, uri: str) -> tuple[pa.Table, str]:
    """A dataset by URI: a frozen ``artifact:`` set (verified) or a training set from the features package."""
    if uri.startswith(ARTIFACT_URI_PREFIX):
        digest = uri.removeprefix(ARTIFACT_URI_PREFIX)
        return pq.read_table(io.BytesIO(store.get(digest))), digest

    training_set = read_training_set(uri)
    return training_set.table, training_set.fingerprint.content_sha256


def fingerprint_of(table: pa.Table) -> str:
    return sha256_hex(table_to_parquet(table))
