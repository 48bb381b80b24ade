"""Pseudonymous keys for patients, encounters and source resources.

A key is HMAC-SHA256 (hex) of ``"<ResourceType>/<id>"`` under the installation's pseudonym key
(``get_settings().pseudonym_key``), so the same source id always maps to the same key and the raw
id never reaches the lake. The HMAC inner and outer hash states are computed once, which makes a
key about five times cheaper than ``hmac.new`` per call; patient keys are cached because every
resource of a patient asks for the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from operator import methodcaller

_BLOCK = 64  # SHA-256 block size in bytes (RFC 2104)
_PATIENT_CACHE_LIMIT = 1_000_000
_DIGEST = methodcaller("digest")
_HEXDIGEST = methodcaller("hexdigest")


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms under one installation key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the pseudonym key is empty")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(_BLOCK, b"\0")
        self._ipad = bytes(b ^ 0x36 for b in padded)
        self._opad = bytes(b ^ 0x5C for b in padded)
        self._inner = hashlib.sha256(self._ipad)
        self._outer = hashlib.sha256(self._opad)
        self._patients: dict[str, str] = {}
        self._encounters: dict[str, str] = {}

    def _hmac(self, message: str) -> str:
        inner = self._inner.copy()
        inner.update(message.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def resource_key(self, resource_type: str, resource_id: str) -> str:
        """The pseudonym of ``<resource_type>/<resource_id>``."""
        return self._hmac(f"{resource_type}/{resource_id}")

    def resource_keys(self, resource_type: str, resource_ids: Iterable[str]) -> Iterator[str]:
        """``resource_key(resource_type, id)`` of each id, as a ``map`` pipeline over C functions:
        no Python bytecode runs per id, which makes a key about half the cost of ``resource_key``."""
        messages = map(str.encode, map(f"{resource_type}/".__add__, resource_ids))
        inner = map(_DIGEST, map(hashlib.sha256, map(self._ipad.__add__, messages)))
        return map(_HEXDIGEST, map(hashlib.sha256, map(self._opad.__add__, inner)))

    def hmac_pads(self) -> tuple[bytes, bytes]:
        """The inner and outer padded keys (RFC 2104), for a query engine that computes the same
        keys a column at a time as ``sha256(outer || sha256(inner || "<Type>/<id>"))``. Secret
        material: pass it as query parameters, never into query text or logs."""
        return self._ipad, self._opad

    def encounter_key(self, source_encounter_id: str) -> str:
        """The pseudonym of ``Encounter/<id>`` (cached: every vital sign of a stay asks for it)."""
        key = self._encounters.get(source_encounter_id)
        if key is None:
            if len(self._encounters) >= _PATIENT_CACHE_LIMIT:
                self._encounters.clear()
            key = self._encounters[source_encounter_id] = self._hmac(f"Encounter/{source_encounter_id}")
        return key

    def patient_key(self, source_patient_id: str) -> str:
        """The pseudonymous key of the patient whose source id is ``source_patient_id``."""
        key = self._patients.get(source_patient_id)
        if key is None:
            if len(self._patients) >= _PATIENT_CACHE_LIMIT:
                self._patients.clear()
            key = self._patients[source_patient_id] = self._hmac(f"Patient/{source_patient_id}")
        return key
