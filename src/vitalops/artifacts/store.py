"""Content-addressed artifact storage: every blob is stored under its sha256 and verified on read.

A small abstract base plus a factory dict keyed by URL scheme, so that object storage can be added
beside the local folder without touching callers. Writing the same bytes twice is a no-op, so an
artifact written by a transaction that later rolls back is only an orphan file, never a wrong one.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from vitalops.core.ids import sha256_hex
from vitalops.errors import ConfigError, IntegrityError, InvalidInput, NotFound

_HEX = frozenset("0123456789abcdef")


def _check_digest(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise InvalidInput(f"'{sha256[:80]}' is not a sha256 digest (64 lowercase hex characters)")
    return sha256


class ArtifactStore(ABC):
    """Blobs by sha256. ``get`` always re-hashes what it read and refuses a mismatch."""

    @abstractmethod
    def _write(self, sha256: str, content: bytes) -> None: ...

    @abstractmethod
    def _read(self, sha256: str) -> bytes: ...

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def uri(self, sha256: str) -> str:
        """Where the blob lives, for lineage records and messages."""

    def put(self, content: bytes) -> str:
        """Store ``content`` (idempotent) and return its sha256."""
        digest = sha256_hex(content)
        if not self.exists(digest):
            self._write(digest, content)
        return digest

    def get(self, sha256: str) -> bytes:
        """The blob's bytes; NotFound when absent, IntegrityError when they do not hash to ``sha256``."""
        content = self._read(_check_digest(sha256))
        actual = sha256_hex(content)
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256} is corrupted: its content hashes to {actual}; refusing to load it",
                details={"expected": sha256, "actual": actual},
            )
        return content


class LocalArtifactStore(ArtifactStore):
    """Files under ``root/ab/abcdef...`` (written atomically, read-only afterwards)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self._path(_check_digest(sha256)).exists()

    def uri(self, sha256: str) -> str:
        return self._path(sha256).resolve().as_uri()

    def _write(self, sha256: str, content: bytes) -> None:
        path = self._path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {sha256} is not in the store at {self.root}") from exc


#: URL scheme -> store class. Object storage (s3://, gs://, abfs://) plugs in here.
STORES: dict[str, type[ArtifactStore]] = {"file": LocalArtifactStore}


def open_store(root: str | Path) -> ArtifactStore:
    """The artifact store at ``root`` (a folder or ``file://`` URL); ConfigError for an unknown scheme."""
    text = str(root)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return LocalArtifactStore(text)
    store = STORES.get(scheme)
    if store is None:
        raise ConfigError(f"no artifact store for '{scheme}://' URLs; known: {', '.join(sorted(STORES))}")
    return store(rest if scheme == "file" else text)  # type: ignore[call-arg]
