"""Features, cohorts and labels: declarative definitions, the point-in-time kernel, the offline
training-set builder and the online path. See docs/scaling.md for running it on Dask."""

from __future__ import annotations

from pathlib import Path

from vitalops.errors import NotFound
from vitalops.features.definitions import CohortDef, DatasetSpec, FeatureDef, LabelDef, load_spec
from vitalops.features.engine import compute_features
from vitalops.features.online import features_from_resources, features_from_store
from vitalops.features.training_set import (
    DatasetFingerprint,
    TrainingSet,
    build_training_set,
    read_training_set,
    summarize,
    write_training_set,
)

DEMO_SPECS = ("deterioration", "readmission")


def demo_spec_path(name: str) -> Path:
    """The definition file of a demo model (``deterioration`` or ``readmission``)."""
    if name not in DEMO_SPECS:
        raise NotFound(f"no demo definition called {name!r}; known: {', '.join(DEMO_SPECS)}")
    return Path(__file__).parent / "demo" / f"{name}.yaml"


__all__ = [
    "DEMO_SPECS",
    "CohortDef",
    "DatasetFingerprint",
    "DatasetSpec",
    "FeatureDef",
    "LabelDef",
    "TrainingSet",
    "build_training_set",
    "compute_features",
    "demo_spec_path",
    "features_from_resources",
    "features_from_store",
    "load_spec",
    "read_training_set",
    "summarize",
    "write_training_set",
]
