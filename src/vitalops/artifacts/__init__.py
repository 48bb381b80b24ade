"""Content-addressed artifact store and safe model loading (no pickle from disk)."""

from __future__ import annotations

from vitalops.artifacts.bundle import (
    ModelBundle,
    load_bundle_model,
    load_predictor,
    read_bundle,
    save_model,
    save_model_bytes,
)
from vitalops.artifacts.predictor import Predictor
from vitalops.artifacts.store import STORES, ArtifactStore, LocalArtifactStore, open_store

__all__ = [
    "STORES",
    "ArtifactStore",
    "LocalArtifactStore",
    "ModelBundle",
    "Predictor",
    "load_bundle_model",
    "load_predictor",
    "open_store",
    "read_bundle",
    "save_model",
    "save_model_bytes",
]
