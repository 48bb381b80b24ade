"""Deterministic, safe model formats: skops for scikit-learn, native text/JSON for the boosters, ONNX as is.

Determinism matters because a version's artifact hash is its identity: the same spec and data must
give the same bytes. skops writes object ids and wall-clock zip timestamps, so its archive is
re-packed here with ids renumbered in document order, arrays named by that order, entries sorted
and every timestamp fixed. Loading never uses pickle: skops with an explicit trusted-types list,
LightGBM and XGBoost from their own model text, ONNX through onnxruntime.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from vitalops.core.extras import import_extra
from vitalops.errors import IntegrityError, InvalidInput

FLAVORS = ("sklearn", "lightgbm", "xgboost", "onnx")

#: Types skops may construct beyond its own defaults (sklearn, numpy and scipy basics it trusts already).
TRUSTED_SKOPS_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.utils._bunch.Bunch",
    "builtins.slice",
    "collections.OrderedDict",
)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _canonical_skops(archive: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(archive))
    schema = json.loads(source.read("schema.json"))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__id__" in node and isinstance(node["__id__"], int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str):
                node["file"] = files.setdefault(node["file"], f"array-{len(files) + 1:05d}.npy")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    entries = {"schema.json": json.dumps(schema, separators=(",", ":")).encode()}
    for old, new in files.items():
        entries[new] = source.read(old)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, entries[name])
    return out.getvalue()


def dump_model(model: Any, flavor: str) -> bytes:
    """The model's bytes in its flavor's format, byte-identical for identical fitted models."""
    if flavor == "sklearn":
        import skops.io as sio

        return _canonical_skops(sio.dumps(model))
    if flavor == "lightgbm":
        booster = getattr(model, "booster_", model)
        return str(booster.model_to_string()).encode()
    if flavor == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return bytes(booster.save_raw(raw_format="json"))
    if flavor == "onnx":
        return bytes(model)
    raise InvalidInput(f"unknown model flavor '{flavor}'; known: {', '.join(FLAVORS)}")


def load_model(content: bytes, flavor: str) -> Any:
    """Rebuild a model from verified bytes without pickle.

    Raises IntegrityError when a skops archive asks for a type outside the trusted list, and
    InvalidInput when the bytes are not a model of ``flavor``.
    """
    try:
        if flavor == "sklearn":
            import skops.io as sio

            untrusted = sio.get_untrusted_types(data=content)
            refused = sorted(set(untrusted) - set(TRUSTED_SKOPS_TYPES))
            if refused:
                raise IntegrityError(
                    f"the scikit-learn model asks to load types that are not trusted: {', '.join(refused)}",
                    details={"untrusted_types": refused},
                )
            return sio.loads(content, trusted=list(untrusted))
        if flavor == "lightgbm":
            lightgbm = import_extra("lightgbm")
            return lightgbm.Booster(model_str=content.decode())
        if flavor == "xgboost":
            xgboost = import_extra("xgboost")
            booster = xgboost.Booster(params={"nthread": 1})
            booster.load_model(bytearray(content))
            return booster
        if flavor == "onnx":
            onnxruntime = import_extra("onnxruntime")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            return onnxruntime.InferenceSession(
                content, sess_options=options, providers=["CPUExecutionProvider"]
            )
    except (IntegrityError, InvalidInput):  # MissingExtra among them: it names the extra to install
        raise
    except Exception as exc:
        raise InvalidInput(f"the artifact is not a readable {flavor} model ({type(exc).__name__})") from exc
    raise InvalidInput(f"unknown model flavor '{flavor}'; known: {', '.join(FLAVORS)}")
