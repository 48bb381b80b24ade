"""Optional dependencies, installed through the package's extras, and the one way to import them.

``pip install vitalops`` gives the platform; model kinds and engines that only some installations
use sit behind extras (``pip install 'vitalops[all]'`` gives everything). Importing one through
``import_extra`` turns a missing package into ``MissingExtra``, whose message names the extra to
install, instead of an ImportError trace.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vitalops.errors import MissingExtra

# module -> (extra, what it is for); the extras themselves are declared in pyproject.toml.
EXTRAS: dict[str, tuple[str, str]] = {
    "lightgbm": ("lightgbm", "LightGBM models"),
    "xgboost": ("xgboost", "XGBoost models"),
    "onnxruntime": ("onnx", "ONNX models"),
    "distributed": ("dask", "the Dask engine"),
    "psycopg": ("postgres", "a PostgreSQL database"),
    "redis": ("redis", "a Redis online store"),
}


def missing_extra(module: str) -> MissingExtra:
    """The error for ``module`` (a key of ``EXTRAS``) not being installed."""
    extra, purpose = EXTRAS[module]
    return MissingExtra(
        f"the '{extra}' extra is not installed; it is needed for {purpose}: pip install 'vitalops[{extra}]'",
        details={"module": module, "extra": extra},
    )


def import_extra(module: str) -> ModuleType:
    """Import ``module``, one of ``EXTRAS``; raises MissingExtra naming its extra when it is absent."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name != module:
            raise  # the package is there but broken: its own error says more than ours would
        raise missing_extra(module) from None

