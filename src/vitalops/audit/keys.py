"""The audit chain's keys: two HMAC-SHA256 keys derived from the installation's ``audit_key``.

The secret lives in the home folder's secrets file (``VITALOPS_AUDIT_KEY``), never in the
database, so that write access to the database is not enough to forge, rewrite or rehash events.
One key MACs events, the other the head checkpoints (domain separation: a MAC of one kind can
never pass for the other).
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Any

from vitalops.core.settings import get_settings

_EVENT_LABEL = b"vitalops audit event v1"
_CHECKPOINT_LABEL = b"vitalops audit checkpoint v1"


@lru_cache(maxsize=8)
def _derived(secret: str, label: bytes) -> Any:
    key = hmac.new(secret.encode(), label, hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)  # the pads are computed once; each MAC copies it


def installation_secret() -> str:
    """The configured audit secret (``VITALOPS_AUDIT_KEY`` or the secrets file)."""
    return get_settings().audit_key.get_secret_value()


def event_mac_base(secret: str | None = None) -> Any:
    """An HMAC object keyed for events; call ``.copy()``, ``.update(message)``, ``.hexdigest()``."""
    return _derived(secret if secret is not None else installation_secret(), _EVENT_LABEL)


def checkpoint_mac(message: bytes, secret: str | None = None) -> str:
    mac = _derived(secret if secret is not None else installation_secret(), _CHECKPOINT_LABEL).copy()
    mac.update(message)
    return str(mac.hexdigest())
