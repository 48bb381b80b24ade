"""Column work of bulk ingest that Python does slowly, a block at a time: reading the elements of
Observation NDJSON lines into Arrow columns, the content hash of lines without version metadata,
and SHA-256 over every row of a column block.

Each function has two implementations that give the same result: the C module
``vitalops.ingest._native`` (built with the package when a C compiler and OpenSSL's headers are
there; see ``hatch_build.py``), which reads and hashes with the GIL released (hashing on OpenSSL),
and plain Python. ``NATIVE`` says which one runs; ``VITALOPS_NATIVE=0`` turns the C
module off (and keeps the build from compiling it). Tests run both over the same input.
"""

from __future__ import annotations

import hashlib
import operator
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_native: ModuleType | None
try:
    from vitalops.ingest import _native  # type: ignore[attr-defined,no-redef]
except ImportError:  # built without it (no compiler or OpenSSL headers): pure Python
    _native = None

#: True when the C module is in use.
NATIVE = _native is not None and os.environ.get("VITALOPS_NATIVE") != "0"
_HEX = operator.methodcaller("hexdigest")
_DIGEST = operator.methodcaller("digest")
_SEPARATOR = b"\x1f"


def use_native(enabled: bool) -> bool:
    """Use the C module (when it is built) or not; return whether it is now in use. For tests
    that hold the two implementations to each other."""
    global NATIVE
    NATIVE = enabled and _native is not None
    return NATIVE


#: An element every line is read for: (dotted attribute path, kind, sentinel), the kind one of
#: "text" (a string array), "raw" (the JSON text of the element, a binary array, empty when it is
#: absent), "float" (a float64 array), "length" (an int64 numpy array) or "is" (whether the element
#: is ``sentinel``, a bool numpy array).
Request = tuple[str, str, object]


def scan_observations(
    lines: Sequence[bytes], requests: Sequence[Request], component_requests: Sequence[Request]
) -> tuple[np.ndarray, list[Any], list[Any]] | None:
    """Observation NDJSON ``lines`` read by the C scanner: which lines it takes, the columns
    ``requests`` name (one row per line) and those ``component_requests`` name (one row per
    component of every line, in line order); None without the C module, or for a block of more
    than 2 GiB. Its pure-Python twin decodes with msgspec (``columnar_observations._read_block``)."""
    if not NATIVE:
        return None
    assert _native is not None
    count = len(lines)
    if sum(map(len, lines)) > _SCAN_LIMIT:  # 32-bit Arrow offsets: msgspec reads such a block
        return None
    taken, columns, components = _native.scan_observations(lines if type(lines) is list else list(lines))
    if len(columns) != len(requests) or len(components) != len(component_requests):
        raise RuntimeError("the native ingest module does not match vitalops.ingest.columnar_observations")
    rows = len(np.frombuffer(components[-1][0], np.bool_)) if components else 0
    return (
        np.frombuffer(taken, np.bool_).copy(),
        [_column(kind, count, *parts) for (_, kind, _), parts in zip(requests, columns, strict=True)],
        [_column(kind, rows, *parts) for (_, kind, _), parts in zip(component_requests, components, strict=True)],
    )


_SCAN_LIMIT = 2**31 - 1  # bytes in a block the scanner reads


def content_versions(lines: Sequence[bytes]) -> list[str | None] | None:
    """For each line, the first 32 hex digits of the SHA-256 of the line as
    ``orjson.dumps(orjson.loads(line), option=OPT_SORT_KEYS)`` spells it (the version
    ``extract_common.source_version`` gives a resource without version metadata), or None where
    the C module is not sure of that spelling; None without the C module (or an older build)."""
    function = getattr(_native, "content_versions", None) if NATIVE else None
    if function is None:
        return None
    result: list[str | None] = function(lines if type(lines) is list else list(lines))
    return result


def _column(kind: str, count: int, values: bytes, data: bytes, validity: bytes | None, nulls: int) -> Any:
    bitmap = None if validity is None else pa.py_buffer(validity)
    if kind == "text":
        return pa.Array.from_buffers(pa.string(), count, [bitmap, pa.py_buffer(values), pa.py_buffer(data)], nulls)
    if kind == "raw":
        return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(values), pa.py_buffer(data)])
    if kind == "float":
        return pa.Array.from_buffers(pa.float64(), count, [bitmap, pa.py_buffer(values)], nulls)
    return np.frombuffer(values, np.int64 if kind == "length" else np.bool_)


def hmac_hex(ipad: bytes, opad: bytes, prefix: str, messages: pa.Array) -> pa.Array:
    """HMAC-SHA256 (hex) of ``prefix`` + each text of ``messages`` (no nulls), with the padded
    keys ``ipad`` and ``opad`` (RFC 2104), as a string array."""
    if messages.null_count:
        raise ValueError("hmac_hex: a message is null")
    count = len(messages)
    if NATIVE:
        wide = pa.types.is_large_string(messages.type)
        if not wide:
            messages = messages.cast(pa.string())
        _, offsets, data = messages.buffers()
        offsets = offsets.slice(messages.offset * (8 if wide else 4))
        assert _native is not None
        digests = _native.hmac_sha256_hex(ipad, opad, prefix.encode(), offsets, data or b"", count, wide)
        return _hex_column(digests, count)
    head = prefix.encode()
    encoded = (head + text.encode() for text in messages.to_pylist())
    inner = map(_DIGEST, map(hashlib.sha256, map(ipad.__add__, encoded)))
    return pa.array(list(map(_HEX, map(hashlib.sha256, map(opad.__add__, inner)))), pa.string())


def sha256_rows_hex(columns: Sequence[pa.Array]) -> pa.Array:
    """SHA-256 (hex) of each row of ``columns`` spelt as text, joined by ``0x1f``: a string as it
    is, a float as Python's ``repr``, an integer in decimal, a null as ``None``."""
    count = len(columns[0]) if columns else 0
    if NATIVE:
        specs = [_column_spec(column) for column in columns]
        assert _native is not None
        return _hex_column(_native.sha256_rows_hex(specs, count), count)
    parts = []
    for column in columns:
        if pa.types.is_floating(column.type):
            column = pa.array([None if v is None else repr(v) for v in column.to_pylist()], pa.string())
        elif not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        parts.append(pc.fill_null(column, "None"))
    if not parts:
        return pa.array([], pa.string())
    messages = pc.binary_join_element_wise(*parts, _SEPARATOR.decode()).cast(pa.binary()).to_pylist()
    return pa.array(list(map(_HEX, map(hashlib.sha256, messages))), pa.string())


def _column_spec(column: pa.Array) -> tuple[int, Any, Any, Any, int]:
    """(kind, validity, offsets, data, offset) of a column, as ``_native.sha256_rows_hex`` reads it."""
    assert _native is not None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # Columns already of the type read are not cast (a cast to the same type still costs a few
    # microseconds, which a prefetch's few rows notice over eighteen columns).
    kind = column.type
    if pa.types.is_floating(kind):
        if kind != pa.float64():
            column = column.cast(pa.float64())
        validity, data = column.buffers()
        return _native.COLUMN_FLOAT, validity, None, data, column.offset
    if pa.types.is_integer(kind):
        if kind != pa.int64():
            column = column.cast(pa.int64())
        validity, data = column.buffers()
        return _native.COLUMN_INT, validity, None, data, column.offset
    wide = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
    if not wide and kind != pa.string():
        column = column.cast(pa.string())
    validity, offsets, data = column.buffers()
    return _native.COLUMN_TEXT if wide else _native.COLUMN_TEXT32, validity, offsets, data or b"", column.offset


def _hex_column(digests: bytes, count: int) -> pa.Array:
    offsets = pa.py_buffer(np.arange(0, 64 * (count + 1), 64, dtype=np.int32))
    return pa.Array.from_buffers(pa.string(), count, [None, offsets, pa.py_buffer(digests)])
