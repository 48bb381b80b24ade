"""A stored model: a manifest blob that names the model blob, its flavor, its input columns and its fast path.

Both blobs are content-addressed, so the manifest's sha256 identifies the model and everything
needed to score it exactly; a registry version records that digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from vitalops.artifacts.formats import FLAVORS, dump_model, load_model
from vitalops.artifacts.predictor import (
    EstimatorPredictor,
    LightGBMPredictor,
    LinearLogisticPredictor,
    OnnxPredictor,
    Predictor,
    XGBoostPredictor,
    linear_logistic_params,
)
from vitalops.artifacts.store import ArtifactStore, open_store
from vitalops.core.ids import canonical_json
from vitalops.core.settings import get_settings
from vitalops.errors import IntegrityError, InvalidInput

MANIFEST_FORMAT = "vitalops.model/1"


@dataclass(frozen=True)
class ModelBundle:
    """What a version's ``artifact_sha256`` points at."""

    sha256: str
    flavor: str
    model_sha256: str
    feature_names: tuple[str, ...]
    fast_path: dict[str, Any] = field(default_factory=dict)

    @property
    def fast_path_kind(self) -> str:
        return str(self.fast_path.get("kind", "estimator"))


def _fast_path(model: Any, flavor: str) -> dict[str, Any]:
    if flavor == "sklearn":
        params = linear_logistic_params(model)
        return {"kind": "linear_logistic", **params} if params else {"kind": "estimator"}
    return {"kind": {"lightgbm": "lightgbm_booster", "xgboost": "xgboost_booster", "onnx": "onnx"}[flavor]}


def save_model(
    store: ArtifactStore, model: Any, *, flavor: str, feature_names: list[str] | tuple[str, ...]
) -> ModelBundle:
    """Write the model and its manifest; returns the bundle whose ``sha256`` identifies both."""
    if flavor not in FLAVORS:
        raise InvalidInput(f"unknown model flavor '{flavor}'; known: {', '.join(FLAVORS)}")
    return save_model_bytes(
        store,
        dump_model(model, flavor),
        flavor=flavor,
        feature_names=feature_names,
        fast_path=_fast_path(model, flavor),
    )


def save_model_bytes(
    store: ArtifactStore,
    content: bytes,
    *,
    flavor: str,
    feature_names: list[str] | tuple[str, ...],
    fast_path: dict[str, Any] | None = None,
) -> ModelBundle:
    """Store already-serialized model bytes (a brought model) with its manifest."""
    if fast_path is None:
        fast_path = _fast_path(load_model(content, flavor), flavor)
    model_sha256 = store.put(content)
    manifest = {
        "format": MANIFEST_FORMAT,
        "flavor": flavor,
        "model_sha256": model_sha256,
        "feature_names": list(feature_names),
        "fast_path": fast_path,
    }
    sha256 = store.put(canonical_json(manifest))
    return ModelBundle(sha256, flavor, model_sha256, tuple(feature_names), fast_path)


def read_bundle(store: ArtifactStore, sha256: str) -> ModelBundle:
    """The verified manifest. Raises IntegrityError when it is corrupted or not a VitalOps manifest."""
    try:
        manifest = orjson.loads(store.get(sha256))
    except orjson.JSONDecodeError as exc:
        raise IntegrityError(f"artifact {sha256} is not a model manifest") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(f"artifact {sha256} is not a {MANIFEST_FORMAT} manifest")
    return ModelBundle(
        sha256=sha256,
        flavor=manifest["flavor"],
        model_sha256=manifest["model_sha256"],
        feature_names=tuple(manifest["feature_names"]),
        fast_path=manifest.get("fast_path") or {"kind": "estimator"},
    )


def load_bundle_model(store: ArtifactStore, bundle: ModelBundle) -> Any:
    """The model object itself (a scikit-learn estimator, a booster or an ONNX session), verified."""
    return load_model(store.get(bundle.model_sha256), bundle.flavor)


def load_predictor(sha256: str, *, store: ArtifactStore | None = None) -> Predictor:
    """The fast predictor of the model stored under ``sha256``; every blob read is verified.

    Raises IntegrityError for a corrupted artifact and NotFound when it is missing.
    """
    if store is None:

        store = open_store(get_settings().artifacts_root)
    bundle = read_bundle(store, sha256)
    names = bundle.feature_names
    if bundle.fast_path_kind == "linear_logistic":
        # The model blob is still verified so that a corrupted artifact never scores.
        store.get(bundle.model_sha256)
        return LinearLogisticPredictor.from_params(names, bundle.fast_path)
    model = load_bundle_model(store, bundle)
    if bundle.flavor == "lightgbm":
        return LightGBMPredictor(names, model)
    if bundle.flavor == "xgboost":
        return XGBoostPredictor(names, model)
    if bundle.flavor == "onnx":
        return OnnxPredictor(names, model)
    return EstimatorPredictor(names, model)
