"""Each version's training reference: what monitoring compares every window against.

Computed once per version from the dataset it was trained on (``dataset_uri``: a training set or a
frozen ``artifact:`` set), on the rows of its training split when its lineage records the split
(else every labelled row): per feature, its value distribution (exact value counts, compressed to
``MAX_POINTS`` quantile points when it has more distinct values), its decile bin edges and counts,
and its missing rate; the version's scores on those rows, their decile edges, its flag rate at
its threshold, the isotonic calibration of its scores for CBPE (fitted on the rows it was not
trained on, its temporal test split, when the lineage records the split and those rows hold both
outcome classes: a calibration fitted on the training rows' own scores is as overconfident as the
model is overfitted, and its estimates with it; else on the reference rows), and
the number of distinct patients among the rows (for the drift tests' effective sizes). The
document is stored content-addressed in the artifact store and its digest in
``monitoring_references``; ``fingerprint`` is that digest. It holds no patient keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy.orm import Session

from vitalops.artifacts import ArtifactStore
from vitalops.core.clock import utcnow
from vitalops.db.tables.monitoring import MonitoringReferenceRow
from vitalops.db.tables.registry import ModelVersionRow
from vitalops.governance.criteria import quantile_bin_edges
from vitalops.monitoring.cbpe import Calibration
from vitalops.monitoring.stats import DEFAULT_BINS, Distribution, independent_share, is_categorical

#: Distinct values a feature's stored reference keeps exactly; beyond, quantile points (KS within 1/MAX_POINTS).
MAX_POINTS = 5000
REFERENCE_FORMAT = "vitalops.monitoring.reference/1"


@dataclass(frozen=True)
class FeatureReference:
    name: str
    distribution: Distribution
    edges: np.ndarray
    categorical: bool

    @property
    def missing_rate(self) -> float:
        return self.distribution.missing_rate


@dataclass(frozen=True)
class Reference:
    """A version's reference (see the module docstring)."""

    features: dict[str, FeatureReference]
    scores: Distribution
    score_edges: np.ndarray
    threshold: float
    flag_rate: float
    rows: int
    dataset_fingerprint: str
    source: str
    #: Isotonic calibration of the scores on the reference's outcomes, for CBPE (None: one class only).
    calibration: Calibration | None = None
    fingerprint: str = ""
    #: Distinct patients among the rows (None: a dataset without patient keys, or a reference
    #: stored before they were counted; the tests then treat every row as independent).
    patients: int | None = None
    #: The rows the calibration was fitted on (``temporal test split``, or the reference's ``source``).
    calibration_source: str | None = None

    @property
    def independent_share(self) -> float:
        """The share of the reference's rows that are independent (distinct patients over rows)."""
        return independent_share(self.patients, self.rows)

    def to_document(self) -> dict[str, Any]:
        return {
            "format": REFERENCE_FORMAT, "rows": self.rows, "source": self.source,
            "dataset_fingerprint": self.dataset_fingerprint, "threshold": self.threshold,
            "flag_rate": self.flag_rate, "bins": DEFAULT_BINS,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            **({} if self.patients is None else {"patients": self.patients}),
            **({} if self.calibration_source is None else {"calibration_source": self.calibration_source}),
            "scores": self.scores.to_dict(), "score_edges": self.score_edges.tolist(),
            "features": {name: {"distribution": f.distribution.compressed(MAX_POINTS).to_dict(),
                                "edges": f.edges.tolist(), "categorical": f.categorical}
                         for name, f in self.features.items()},
        }

    @classmethod
    def from_document(cls, document: dict[str, Any], fingerprint: str) -> Reference:
        features = {
            name: FeatureReference(name, Distribution.from_dict(f["distribution"]),
                                   np.asarray(f["edges"], dtype=np.float64), bool(f["categorical"]))
            for name, f in document["features"].items()
        }
        return cls(features, Distribution.from_dict(document["scores"]),
                   np.asarray(document["score_edges"], dtype=np.float64), float(document["threshold"]),
                   float(document["flag_rate"]), int(document["rows"]), document["dataset_fingerprint"],
                   document["source"],
                   None if document.get("calibration") is None else Calibration.from_dict(document["calibration"]),
                   fingerprint, None if document.get("patients") is None else int(document["patients"]),
                   document.get("calibration_source"))


def compute_reference(features: np.ndarray, feature_names: list[str], scores: np.ndarray, threshold: float, *,
                      dataset_fingerprint: str, source: str, outcomes: np.ndarray | None = None,
                      patients: int | None = None,
                      calibrate_on: tuple[np.ndarray, np.ndarray, str] | None = None) -> Reference:
    """The reference of rows ``features`` (NaN = missing; columns ``feature_names``) scored ``scores``,
    with the isotonic calibration of ``scores`` on ``outcomes`` when both classes occur, or of the
    (scores, outcomes, source) of ``calibrate_on`` when given and both classes occur there;
    ``patients`` the distinct patients among the rows, when known."""
    per_feature = {}
    for column, name in enumerate(feature_names):
        values = features[:, column]
        distribution = Distribution.from_values(values)
        finite = values[~np.isnan(values)]
        edges = quantile_bin_edges(finite, DEFAULT_BINS) if finite.shape[0] else np.empty(0)
        per_feature[name] = FeatureReference(name, distribution, edges, is_categorical(distribution))
    score_distribution = Distribution.from_values(scores)
    fit_scores, fit_outcomes, fit_source = scores, outcomes, source
    if calibrate_on is not None and 0 < calibrate_on[1].sum() < calibrate_on[1].shape[0]:
        fit_scores, fit_outcomes, fit_source = calibrate_on
    both = fit_outcomes is not None and 0 < fit_outcomes.sum() < fit_outcomes.shape[0]
    return Reference(
        per_feature, score_distribution, quantile_bin_edges(scores, DEFAULT_BINS), float(threshold),
        float(np.mean(scores >= threshold)) if scores.shape[0] else float("nan"), int(features.shape[0]),
        dataset_fingerprint, source,
        Calibration.fit(fit_scores, fit_outcomes) if both else None,
        patients=patients, calibration_source=fit_source if both else None,
    )


def _reference_rows(table: Any, names: list[str], lineage: dict[str, Any]) -> tuple[Any, str, Any]:
    """(reference rows, their name, the temporal test rows or None)."""
    from vitalops.training.datasets import labelled_rows, split_rows

    rows = labelled_rows(table, names)
    split = lineage.get("split")
    if isinstance(split, dict):
        training, test, _ = split_rows(rows, train_before=_date(split.get("train_before")),
                                       train_fraction=split.get("train_fraction"),
                                       external_sites=list(split.get("external_sites") or []))
        if len(training):
            return training, "training split", test if len(test) else None
    return rows, "labelled rows", None


def _patients(keys: np.ndarray | None) -> int | None:
    if keys is None or any(key is None for key in keys):
        return None
    return len(set(keys.tolist()))


def _date(value: Any) -> Any:
    from datetime import date

    return date.fromisoformat(value[:10]) if isinstance(value, str) else value


def load_reference(session: Session, store: ArtifactStore, version_id: int) -> Reference | None:
    """The stored reference of a version, or None when none was computed yet."""
    row = session.get(MonitoringReferenceRow, version_id)
    if row is None:
        return None
    return Reference.from_document(orjson.loads(store.get(row.reference_sha256)), row.reference_sha256)


def ensure_reference(session: Session, store: ArtifactStore, version_id: int) -> Reference | None:
    """The version's reference, computed and stored on first use (in the caller's transaction);
    None when the version records no dataset to compute it from."""
    from vitalops.artifacts.bundle import load_predictor
    from vitalops.registry.schemas import Signature
    from vitalops.training.datasets import read_dataset

    existing = load_reference(session, store, version_id)
    if existing is not None:
        return existing
    version = session.get_one(ModelVersionRow, version_id)
    if version.dataset_uri is None:
        return None
    table, fingerprint = read_dataset(store, version.dataset_uri)
    names = Signature.model_validate_json(version.signature_json).feature_names
    rows, source, test = _reference_rows(table, list(names), orjson.loads(version.lineage_json or "{}"))
    predictor = load_predictor(version.artifact_sha256, store=store)
    scores = predictor.predict_proba(rows.features)
    held_out = None if test is None else (np.asarray(predictor.predict_proba(test.features), dtype=np.float64),
                                          np.asarray(test.labels), "temporal test split")
    reference = compute_reference(rows.features, list(names), np.asarray(scores, dtype=np.float64), version.threshold,
                                  dataset_fingerprint=fingerprint, source=source, outcomes=rows.labels,
                                  patients=_patients(rows.patient_keys), calibrate_on=held_out)
    digest = store.put(orjson.dumps(reference.to_document(), option=orjson.OPT_SORT_KEYS))
    session.add(MonitoringReferenceRow(version_id=version_id, reference_sha256=digest,
                                       dataset_fingerprint=fingerprint, rows=reference.rows, created_at=utcnow()))
    session.flush()
    return Reference.from_document(orjson.loads(store.get(digest)), digest)
