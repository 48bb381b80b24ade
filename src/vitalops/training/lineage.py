"""The code version a model version records: the package version plus the git commit when known."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def _git_commit(start: Path) -> str | None:
    for folder in (start, *start.parents):
        git = folder / ".git"
        if not git.is_dir():
            continue
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head[:40]
        ref = head.removeprefix("ref: ")
        loose = git / ref
        if loose.exists():
            return loose.read_text(encoding="utf-8").strip()[:40]
        packed = git / "packed-refs"
        if packed.exists():
            for line in packed.read_text(encoding="utf-8").splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0][:40]
        return None
    return None


def code_version() -> str:
    """``vitalops <version>`` and ``+<commit>`` when running from a git checkout."""
    try:
        version = metadata.version("vitalops")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _git_commit(Path(__file__).resolve().parent)
    return f"vitalops {version}" + (f"+{commit[:12]}" if commit else "")
