from __future__ import annotations

import hashlib
import os

import pytest

from vitalops.artifacts import LocalArtifactStore, open_store
from vitalops.errors import ConfigError, IntegrityError, InvalidInput, NotFound


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = open_store(tmp_path)
    digest = store.put(b"model bytes")
    assert digest == hashlib.sha256(b"model bytes").hexdigest()
    assert store.put(b"model bytes") == digest
    assert store.get(digest) == b"model bytes"
    assert isinstance(open_store(f"file://{tmp_path}"), LocalArtifactStore)


def test_corrupted_blob_refuses_to_load(tmp_path):
    store = LocalArtifactStore(tmp_path)
    digest = store.put(b"weights")
    path = tmp_path / digest[:2] / digest
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError) as caught:
        store.get(digest)
    assert digest in caught.value.message


def test_missing_bad_digest_and_unknown_scheme(tmp_path):
    store = open_store(tmp_path)
    with pytest.raises(NotFound):
        store.get("0" * 64)
    with pytest.raises(InvalidInput):
        store.get("../../etc/passwd")
    with pytest.raises(ConfigError):
        open_store("ftp://somewhere/artifacts")
