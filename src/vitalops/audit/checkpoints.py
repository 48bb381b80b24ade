"""Signed head checkpoints of the audit chain, kept in a file outside the database.

Each line is ``{"seq", "hash", "keyed_after", "at", "mac"}``: the chain's head as a verification or
an export saw it, and the switch-over point (events with ``seq <= keyed_after`` were written before
the chain was keyed and carry plain sha256), MAC'd with the checkpoint key (``audit.keys``). Why a
file and not a table: whoever can write the database could delete or roll back a checkpoint table
along with the events; the file lives with the secrets, and removing events below the newest
checkpoint (tail truncation) or rewriting the chain under it is then caught.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from vitalops.audit.keys import checkpoint_mac
from vitalops.core.clock import isoformat_utc, utcnow


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    keyed_after: int
    at: str


def _message(seq: int, head_hash: str, keyed_after: int, at: str) -> bytes:
    return orjson.dumps(["vitalops.audit.checkpoint", seq, head_hash, keyed_after, at])


def read_checkpoints(path: Path, secret: str | None = None) -> tuple[list[Checkpoint], str | None]:
    """The checkpoints in ``path`` (none when it does not exist), and a problem when one fails its MAC."""
    if not path.exists():
        return [], None
    checkpoints: list[Checkpoint] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            checkpoint = Checkpoint(int(entry["seq"]), str(entry["hash"]), int(entry["keyed_after"]), str(entry["at"]))
            mac = str(entry["mac"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return checkpoints, f"checkpoint line {number} of {path.name} is malformed"
        expected = checkpoint_mac(_message(checkpoint.seq, checkpoint.hash, checkpoint.keyed_after, checkpoint.at),
                                  secret)
        if not hmac.compare_digest(expected, mac):
            return checkpoints, f"checkpoint line {number} of {path.name} is not signed with this installation's key"
        checkpoints.append(checkpoint)
    return checkpoints, None


def write_checkpoint(path: Path, seq: int, head_hash: str, keyed_after: int, secret: str | None = None) -> Checkpoint:
    """Append a signed checkpoint (the file is created with mode 0600) and flush it to disk."""
    checkpoint = Checkpoint(seq, head_hash, keyed_after, isoformat_utc(utcnow()))
    mac = checkpoint_mac(_message(seq, head_hash, keyed_after, checkpoint.at), secret)
    line = orjson.dumps({"seq": seq, "hash": head_hash, "keyed_after": keyed_after, "at": checkpoint.at, "mac": mac})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return checkpoint
