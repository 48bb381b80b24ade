"""``vitalops train SPEC``: fit the spec's estimator, validate it, and register a version in one transaction.

The artifact is written before the transaction (content-addressed, so a version that fails to
register leaves at most an orphan file that any later identical model reuses); the model, the
version and its audit events commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from vitalops.artifacts import ModelBundle, open_store, save_model
from vitalops.artifacts.bundle import load_predictor
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.errors import Conflict, InvalidInput, NotFound
from vitalops.features.definition_sets import register_definitions
from vitalops.features.definitions import load_spec
from vitalops.features.training_set import build_training_set
from vitalops.registry.input_ranges import observed_ranges
from vitalops.registry.schemas import ModelCreate, ModelVersion, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version, get_model
from vitalops.training.datasets import (
    ResolvedDataset,
    Rows,
    feature_columns,
    freeze_dataset,
    labelled_rows,
    read_dataset,
    split_rows,
)
from vitalops.training.estimators import build_estimator, fit_estimator
from vitalops.training.evaluate import Evaluation, evaluate, require_both_classes
from vitalops.training.lineage import code_version
from vitalops.training.spec import TrainingSpec, load_training_spec
from vitalops.validation.thresholds import ThresholdRule

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingResult:
    version: ModelVersion
    failures: list[str]
    evaluation: Evaluation
    bundle: ModelBundle

    def summary(self) -> dict[str, Any]:
        auroc = self.evaluation.report.overall.metrics.get("auroc")
        auroc_text = None
        if auroc is not None and auroc.estimate is not None and auroc.low is not None and auroc.high is not None:
            auroc_text = f"{auroc.estimate:.3f} ({auroc.low:.3f}-{auroc.high:.3f})"
        return {
            "model": self.version.model,
            "version": self.version.number,
            "state": self.version.state,
            "auroc": auroc_text,
            "artifact_sha256": self.version.artifact_sha256,
            "report_hash": self.version.report_hash,
            "threshold": self.version.threshold,
            "failed_minimums": self.failures,
        }


def resolve_dataset(spec: TrainingSpec, lake_root: str) -> ResolvedDataset:
    """The spec's dataset: built point-in-time from its feature definitions, or read from its URI."""
    store = open_store(get_settings().artifacts_root)
    if spec.dataset.uri is not None:
        table, fingerprint = read_dataset(store, spec.dataset.uri)
        return ResolvedDataset(table, feature_columns(table), fingerprint, "prebuilt", spec.dataset.uri)

    definitions_path = spec.resolve(str(spec.dataset.spec))
    if not definitions_path.exists():
        raise InvalidInput(f"feature set {definitions_path} named by dataset.spec does not exist")
    definitions = load_spec(definitions_path)
    training_set = build_training_set(definitions, lake_root)
    return ResolvedDataset(
        training_set.table,
        list(training_set.feature_names),
        training_set.fingerprint.content_sha256,
        str(definitions.version),
        None,
        definitions=training_set.spec,
    )


def ensure_model(session: Any, actor: Principal, identity: ModelCreate) -> None:
    """Create the model on first use; refuse a spec that would change a locked item of an existing one."""
    try:
        existing = get_model(session, identity.name)
    except NotFound:
        create_model(session, actor, identity)
        return
    for field in ("intended_use", "output_meaning"):
        if getattr(existing, field) != getattr(identity, field):
            raise Conflict(f"model '{identity.name}': {field} is locked and differs from the spec's")


@dataclass(frozen=True)
class FittedCandidate:
    """A fitted, validated model not yet registered: what ``register_candidate`` records."""

    version_spec: VersionCreate
    evaluation: Evaluation
    bundle: ModelBundle

    @property
    def failures(self) -> list[str]:
        return self.evaluation.failures


def recorded_spec(spec: TrainingSpec) -> dict[str, Any]:
    """The training spec as a version's lineage keeps it (``training_spec``), so that it can be re-run."""
    return spec.model_dump(mode="json")


def latest_index_time(rows: Rows) -> str | None:
    """The latest index time of ``rows`` (ISO 8601, UTC), or None when there are none."""
    if len(rows) == 0:
        return None
    latest = rows.index_times.max().astype("datetime64[us]").item()
    return str(latest.replace(tzinfo=UTC).isoformat())


def fit_candidate(
    spec: TrainingSpec,
    dataset: ResolvedDataset,
    *,
    progress: Progress | None = None,
    lineage: dict[str, Any] | None = None,
    reason: str | None = None,
) -> FittedCandidate:
    """Fit ``spec``'s estimator on ``dataset`` and validate it, writing the artifact (content-addressed)
    but registering nothing. ``lineage`` adds entries to what the version records; ``reason`` prefixes
    its first transition's reason. Raises InvalidInput for unknown excluded features or one-class data."""
    note = progress or (lambda _message: None)
    unknown = sorted(set(spec.dataset.exclude_features) - set(dataset.feature_names))
    if unknown:
        raise InvalidInput(f"dataset.exclude_features names unknown features: {', '.join(unknown)}")
    feature_names = [n for n in dataset.feature_names if n not in set(spec.dataset.exclude_features)]
    rows = labelled_rows(dataset.table, feature_names)
    training, test, external = split_rows(
        rows,
        train_before=spec.split.train_before,
        train_fraction=spec.split.train_fraction,
        external_sites=spec.split.external_sites,
    )
    require_both_classes(training, what="training")
    estimator, kind = build_estimator(spec.estimator, spec.hyperparameters, spec.seed)
    note(f"fitting {spec.estimator} on {len(training)} rows")
    fitted = fit_estimator(estimator, training.features, training.labels)
    store = open_store(get_settings().artifacts_root)
    bundle = save_model(store, fitted, flavor=kind.flavor, feature_names=feature_names)
    predictor = load_predictor(bundle.sha256, store=store)
    note(f"validating on {len(test)} temporal and {len(external)} external rows")
    rule = ThresholdRule(spec.threshold.kind, spec.threshold.value)
    evaluation = evaluate(
        predictor,
        training=training,
        test=test,
        external=external,
        rule=rule,
        patient_days_per_row=spec.threshold.patient_days_per_row,
        n_resamples=spec.validation.n_resamples,
        seed=spec.seed,
        small_group_min=spec.validation.small_group_min or get_settings().small_group_min,
        minimums=spec.minimums,
    )
    state: Literal["draft", "validated"] = "draft" if evaluation.failures else "validated"
    outcome = (
        "missed minimums: " + "; ".join(evaluation.failures) if evaluation.failures else "met its validation minimums"
    )
    version_spec = VersionCreate(
        source="trained",
        state=state,
        # A dataset built in memory is frozen in the artifact store, so that the version records the rows
        # it learned from (monitoring computes its training reference from them).
        dataset_uri=dataset.uri if dataset.uri is not None else freeze_dataset(store, dataset.table)[0],
        dataset_fingerprint=dataset.fingerprint,
        definitions_version=dataset.definitions_version,
        code_version=code_version(),
        estimator=spec.estimator,
        flavor=kind.flavor,
        hyperparameters=spec.hyperparameters,
        signature=Signature.of(feature_names, spec.model.output_meaning),
        artifact_sha256=bundle.sha256,
        threshold=evaluation.threshold,
        report=evaluation.report_json,
        report_hash=evaluation.report_hash,
        lineage={
            "seed": spec.seed,
            "split": spec.split.model_dump(mode="json"),
            "threshold_rule": rule.to_dict(),
            "minimums": spec.minimums,
            "excluded_features": spec.dataset.exclude_features,
            "training_rows": len(training),
            "test_rows": len(test),
            "external_rows": len(external),
            "model_sha256": bundle.model_sha256,
            "input_ranges": observed_ranges(training.features, feature_names),
            # What a retraining re-runs: the spec itself, and how far the rows it split reached.
            "training_spec": recorded_spec(spec),
            "latest_index_time": latest_index_time(rows),
            **(lineage or {}),
        },
        reason=(f"{reason}; " if reason else "trained; ") + outcome,
    )
    return FittedCandidate(version_spec, evaluation, bundle)


def register_candidate(
    session: Session, actor: Principal, spec: TrainingSpec, candidate: FittedCandidate, dataset: ResolvedDataset
) -> ModelVersion:
    """Register ``candidate`` in the caller's transaction (the model on first use, the definitions it
    was built from when known); audited by the registry."""
    ensure_model(session, actor, spec.model)
    if dataset.definitions is not None:
        register_definitions(session, dataset.definitions)
    return create_version(session, actor, spec.model.name, candidate.version_spec)


def train_on_dataset(
    database: Database,
    actor: Principal,
    spec: TrainingSpec,
    dataset: ResolvedDataset,
    *,
    progress: Progress | None = None,
) -> TrainingResult:
    """Fit, validate and register on an already-resolved dataset (see ``train_from_spec``)."""
    authorize(database, actor, Permission.MODELS_TRAIN, object_type="model", object_id=spec.model.name)
    candidate = fit_candidate(spec, dataset, progress=progress)
    with database.session() as session:
        version = register_candidate(session, actor, spec, candidate, dataset)
    return TrainingResult(version, candidate.failures, candidate.evaluation, candidate.bundle)


def train_from_spec(
    database: Database,
    actor: Principal,
    spec_path: Path | str,
    *,
    lake_root: str | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train, validate and register the version a spec file describes.

    Raises InvalidInput for a bad spec, an unknown estimator or feature set, or one-class data;
    PermissionDenied without ``models:train``. Nothing is registered unless everything succeeds.
    """
    authorize(database, actor, Permission.MODELS_TRAIN, object_type="training_spec", object_id=str(spec_path))
    spec = load_training_spec(spec_path)
    dataset = resolve_dataset(spec, lake_root or get_settings().lake_root)
    return train_on_dataset(database, actor, spec, dataset, progress=progress)
