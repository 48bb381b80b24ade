"""Bring your own model: a fitted scikit-learn (skops), LightGBM, XGBoost or ONNX model, checked
against its declared input signature, validated on a dataset like a trained one, and registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitalops.artifacts import load_predictor, open_store, save_model_bytes
from vitalops.artifacts.formats import FLAVORS, load_model
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.settings import get_settings
from vitalops.db import Database
from vitalops.errors import InvalidInput
from vitalops.registry.input_ranges import observed_ranges
from vitalops.registry.schemas import Signature, VersionCreate
from vitalops.registry.versions import create_version, get_model
from vitalops.training.datasets import feature_columns, labelled_rows, read_dataset
from vitalops.training.evaluate import evaluate
from vitalops.training.lineage import code_version
from vitalops.training.trainer import TrainingResult
from vitalops.validation.thresholds import ThresholdRule


def model_input_names(model: Any, flavor: str) -> tuple[int, list[str] | None]:
    """How many inputs the fitted model takes, and their names when the format records them."""
    if flavor == "sklearn":
        names = getattr(model, "feature_names_in_", None)
        return int(model.n_features_in_), None if names is None else [str(n) for n in names]
    if flavor == "lightgbm":
        names = [str(n) for n in model.feature_name()]
        return int(model.num_feature()), None if all(n.startswith("Column_") for n in names) else names
    if flavor == "xgboost":
        names = model.feature_names
        return int(model.num_features()), None if names is None else [str(n) for n in names]
    shape = model.get_inputs()[0].shape
    return int(shape[1]) if isinstance(shape[1], int) else -1, None


def check_signature(model: Any, flavor: str, feature_names: list[str]) -> None:
    """InvalidInput when the model's inputs do not match the declared feature columns."""
    count, names = model_input_names(model, flavor)
    if count not in (-1, len(feature_names)):
        raise InvalidInput(f"the model takes {count} inputs but the signature declares {len(feature_names)} features")
    if names is not None and names != feature_names:
        raise InvalidInput(
            "the model's input names differ from the declared features (order matters)",
            details={"model_inputs": names, "declared": feature_names},
        )


def parse_threshold_rule(text: str) -> ThresholdRule:
    kind, _, value = text.partition(":")
    try:
        return ThresholdRule(kind, float(value))  # type: ignore[arg-type]
    except ValueError:
        raise InvalidInput(f"threshold rule '{text}' is not <kind>:<number>") from None


def register_model_file(
    database: Database,
    actor: Principal,
    name: str,
    model_file: Path,
    *,
    flavor: str,
    dataset_uri: str,
    feature_names: list[str],
    threshold_rule: str = "sensitivity:0.8",
    minimums: dict[str, float] | None = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> TrainingResult:
    """Validate and register a brought model as a new version of the existing model ``name``.

    Raises InvalidInput for an unknown flavor, an unreadable file, a signature that does not match
    the feature set or the dataset, or one-class data; nothing is registered then.
    """
    authorize(database, actor, Permission.MODELS_REGISTER, object_type="model", object_id=name)
    if flavor not in FLAVORS:
        raise InvalidInput(f"unknown model flavor '{flavor}'; known: {', '.join(FLAVORS)}")
    with database.session() as session:
        identity = get_model(session, name)
    try:
        content = Path(model_file).read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"model file {model_file} does not exist") from None
    check_signature(load_model(content, flavor), flavor, feature_names)
    store = open_store(get_settings().artifacts_root)
    table, fingerprint = read_dataset(store, dataset_uri)
    unknown = sorted(set(feature_names) - set(feature_columns(table)))
    if unknown:
        raise InvalidInput(f"the signature names features the dataset lacks: {', '.join(unknown)}")
    rows = labelled_rows(table, feature_names)
    bundle = save_model_bytes(store, content, flavor=flavor, feature_names=feature_names)
    predictor = load_predictor(bundle.sha256, store=store)
    rule = parse_threshold_rule(threshold_rule)
    evaluation = evaluate(
        predictor,
        training=rows,
        test=rows,
        external=rows.subset(rows.labels < 0),
        rule=rule,
        patient_days_per_row=1.0,
        n_resamples=n_resamples,
        seed=seed,
        small_group_min=get_settings().small_group_min,
        minimums=minimums or {},
    )
    spec = VersionCreate(
        source="registered",
        state="draft" if evaluation.failures else "validated",
        dataset_uri=dataset_uri,
        dataset_fingerprint=fingerprint,
        definitions_version="prebuilt",
        code_version=code_version(),
        estimator=f"external:{flavor}",
        flavor=flavor,
        signature=Signature.of(feature_names, identity.output_meaning),
        artifact_sha256=bundle.sha256,
        threshold=evaluation.threshold,
        report=evaluation.report_json,
        report_hash=evaluation.report_hash,
        lineage={"model_file_sha256": bundle.model_sha256, "threshold_rule": rule.to_dict(),
                 "input_ranges": observed_ranges(rows.features, feature_names)},
        reason="registered an externally fitted model",
    )
    with database.session() as session:
        version = create_version(session, actor, name, spec)
    return TrainingResult(version, evaluation.failures, evaluation, bundle)
