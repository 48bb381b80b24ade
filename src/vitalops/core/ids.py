"""Identifiers: random ids for new objects, and content hashes for content-addressed ones."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import orjson


def new_id(prefix: str) -> str:
    """A random, URL-safe id such as ``batch_3f9c2a1b7d4e``; the prefix names the kind of object."""
    return f"{prefix}_{secrets.token_hex(8)}"


def canonical_json(value: Any) -> bytes:
    """The canonical encoding hashed everywhere: sorted keys, no whitespace, UTC datetimes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def content_hash(value: Any) -> str:
    """sha256 of the canonical JSON encoding of ``value``."""
    return sha256_hex(canonical_json(value))
