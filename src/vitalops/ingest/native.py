"""Column work of bulk ingest that Python does slowly, a block at a time: reading elements of
every decoded line into Arrow columns, and SHA-256 over every row of a column block.

Each function has two implementations that give the same result: the C module
``vitalops.ingest._native`` (built with the package when a C compiler and OpenSSL's headers are
there; see ``hatch_build.py``), which walks the objects at C speed and hashes on OpenSSL with the
GIL released, and plain Python. ``NATIVE`` says which one runs; ``VITALOPS_NATIVE=0`` turns the C
module off (and keeps the build from compiling it). Tests run both over the same input.
"""

from __future__ import annotations

import hashlib
import operator
import os
import sys
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


#: What ``gather`` reads: (dotted attribute path, kind, sentinel) with kind one of "text" (a
#: string array), "raw" (the bytes of a buffer such as ``msgspec.Raw``, a binary array), "float"
#: (a float64 array), "length" (``len``, 0 for None, an int64 numpy array) or "is" (whether the
#: element is ``sentinel``, a bool numpy array).
Request = tuple[str, str, object]


def gather(objects: list[Any], requests: Sequence[Request]) -> list[Any]:
    """The elements ``requests`` name of every object, one column per request. An element whose
    path crosses None is None (a null, or 0 for "length")."""
    if NATIVE:
        assert _native is not None
        kinds = {"text": _native.TEXT, "raw": _native.RAW, "float": _native.FLOAT, "length": _native.LENGTH}
        kinds["is"] = _native.IS
        specs = [(tuple(map(sys.intern, path.split("."))), kinds[kind], sentinel) for path, kind, sentinel in requests]
        found = _native.gather(objects, specs)
        return [_column(kind, len(objects), *parts) for (_, kind, _), parts in zip(requests, found, strict=True)]
    return [_gather_python(objects, path, kind, sentinel) for path, kind, sentinel in requests]


def _column(kind: str, count: int, values: bytes, data: bytes, validity: bytes | None, nulls: int) -> Any:
    bitmap = None if validity is None else pa.py_buffer(validity)
    if kind == "text":
        buffers = [bitmap, pa.py_buffer(values), pa.py_buffer(data)]
        return pa.Array.from_buffers(pa.large_string(), count, buffers, nulls).cast(pa.string())
    if kind == "raw":
        return pa.Array.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(values), pa.py_buffer(data)])
    if kind == "float":
        return pa.Array.from_buffers(pa.float64(), count, [bitmap, pa.py_buffer(values)], nulls)
    return np.frombuffer(values, np.int64 if kind == "length" else np.bool_)


def _gather_python(objects: list[Any], path: str, kind: str, sentinel: object) -> Any:
    elements = _elements(objects, path)
    if kind == "text":
        return pa.array(elements, pa.string())
    if kind == "raw":
        return pa.array(list(map(bytes, elements)), pa.large_binary())
    if kind == "float":
        return pa.array(elements, pa.float64())
    if kind == "length":
        return np.fromiter((0 if e is None else len(e) for e in elements), np.int64, len(objects))
    return np.fromiter((e is sentinel for e in elements), np.bool_, len(objects))


def hmac_hex(ipad: bytes, opad: bytes, prefix: str, messages: pa.Array) -> pa.Array:
    """HMAC-SHA256 (hex) of ``prefix`` + each text of ``messages`` (no nulls), with the padded
    keys ``ipad`` and ``opad`` (RFC 2104), as a string array."""
    if messages.null_count:
        raise ValueError("hmac_hex: a message is null")
    count = len(messages)
    if NATIVE:
        large = messages.cast(pa.large_string())
        _, offsets, data = large.buffers()
        offsets = _offsets_from(offsets, large.offset, count)
        assert _native is not None
        digests = _native.hmac_sha256_hex(ipad, opad, prefix.encode(), offsets, data or b"", count)
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


def _elements(objects: list[Any], path: str) -> list[Any]:
    try:
        return list(map(operator.attrgetter(path), objects))
    except AttributeError:  # None on the way: the element is None
        names = path.split(".")
        found = []
        for element in objects:
            for name in names:
                if element is None:
                    break
                element = getattr(element, name)
            found.append(element)
        return found


def _offsets_from(offsets: pa.Buffer, start: int, count: int) -> pa.Buffer:
    """The ``count + 1`` int64 offsets of an array that starts at ``start`` in its buffers."""
    return offsets.slice(start * 8, (count + 1) * 8)


def _column_spec(column: pa.Array) -> tuple[int, Any, Any, Any, int]:
    """(kind, validity, offsets, data, offset) of a column, as ``_native.sha256_rows_hex`` reads it."""
    assert _native is not None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_floating(column.type):
        column = column.cast(pa.float64())
        validity, data = column.buffers()
        return _native.COLUMN_FLOAT, validity, None, data, column.offset
    if pa.types.is_integer(column.type):
        column = column.cast(pa.int64())
        validity, data = column.buffers()
        return _native.COLUMN_INT, validity, None, data, column.offset
    column = column.cast(pa.large_string())
    validity, offsets, data = column.buffers()
    return _native.COLUMN_TEXT, validity, offsets, data or b"", column.offset


def _hex_column(digests: bytes, count: int) -> pa.Array:
    offsets = pa.py_buffer(np.arange(0, 64 * (count + 1), 64, dtype=np.int32))
    return pa.Array.from_buffers(pa.string(), count, [None, offsets, pa.py_buffer(digests)])
