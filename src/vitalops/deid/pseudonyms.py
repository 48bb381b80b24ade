"""Keyed pseudonyms for resource ids and per-patient date offsets.

Both are HMAC-SHA256 under the installation's pseudonymization key, each with its own domain
label, so a de-identified export cannot be joined to the analytics lake's patient keys (which
use the same key without a label) and a date offset reveals nothing about an id pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_ID_LABEL = b"vitalops.deid.id\x00"
_DATE_LABEL = b"vitalops.deid.date-shift\x00"
#: Offsets fall in [-MAX_SHIFT_DAYS, -1] or [1, MAX_SHIFT_DAYS]; 0 is excluded so that no date survives.
MAX_SHIFT_DAYS = 365
PSEUDONYM_HEX_CHARS = 32

_RELATIVE_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_URN_UUID = re.compile(r"^urn:uuid:([A-Za-z0-9\-.]{1,64})$")


def pseudonym(key: bytes, resource_type: str, resource_id: str) -> str:
    """The pseudonymous id of ``resource_type/resource_id``: 32 hex characters, stable under ``key``."""
    message = _ID_LABEL + f"{resource_type}/{resource_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


def date_shift_days(key: bytes, patient_id: str) -> int:
    """The patient's date offset in days: in [-365, -1] or [1, 365], the same for every resource."""
    digest = hmac.new(key, _DATE_LABEL + patient_id.encode(), hashlib.sha256).digest()
    slot = int.from_bytes(digest[:8], "big") % (2 * MAX_SHIFT_DAYS)
    return slot - MAX_SHIFT_DAYS if slot < MAX_SHIFT_DAYS else slot - MAX_SHIFT_DAYS + 1


def parse_reference(reference: object, reference_type: object = None) -> tuple[str, str] | None:
    """``(type, id)`` of a literal reference (relative, absolute, versioned, or ``urn:uuid`` with a
    ``type``), or None when it cannot be resolved to a resource (contained ``#x``, bare URLs, ...)."""
    if not isinstance(reference, str):
        return None
    match = _RELATIVE_REFERENCE.search(reference)
    if match:
        return match.group(1), match.group(2)
    match = _URN_UUID.match(reference)
    if match and isinstance(reference_type, str) and reference_type[:1].isupper():
        return reference_type, match.group(1)
    return None
