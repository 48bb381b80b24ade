"""Evidently in a virtual environment of its own, for the drift bench and the agreement test.

Evidently 0.7 needs pandas below 3 and the project runs on pandas 3, so Evidently cannot be
imported here: it runs in a separate environment, created once per machine from the pinned
``REQUIREMENTS`` under ``~/.cache/vitalops-bench/evidently-<hash>`` (``VITALOPS_EVIDENTLY_ROOT``
moves it), where the hash is of the requirements and the Python version, so a change of pins
makes a new one. Creation holds a file lock, so parallel test workers build it once; an
environment is used only once its stamp file says it is complete. ``worker`` runs
``_evidently_worker.py`` there on JSON in, JSON out, with Evidently's telemetry off.

    from _evidently import worker
    answer = worker({"mode": "stattests", ...})
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The pins: Evidently's last 0.7 release, the last pandas below 3, and the project's pyarrow (for Parquet).
REQUIREMENTS = ("evidently==0.7.23", "pandas==2.3.3", "pyarrow==26.0.1")
WORKER = Path(__file__).resolve().with_name("_evidently_worker.py")
#: pip's whole install, cold (no cache): about 85 s on the 2-core machine; the bound leaves room for a slow mirror.
INSTALL_TIMEOUT_S = 1200
_STAMP = ".vitalops-complete"


class EvidentlyUnavailable(RuntimeError):
    """The Evidently environment could not be created or could not run."""


def environment_root() -> Path:
    return Path(os.environ.get("VITALOPS_EVIDENTLY_ROOT") or Path.home() / ".cache" / "vitalops-bench")


def environment_key() -> str:
    """A hash of the pinned requirements and this Python's version: one environment per pin set."""
    text = "\n".join(REQUIREMENTS) + f"\npython {sys.version_info[0]}.{sys.version_info[1]}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def environment_dir() -> Path:
    return environment_root() / f"evidently-{environment_key()}"


def _python(target: Path) -> Path:
    return target / "bin" / "python"


def ensure_environment(*, pip_cache: bool = True, target: Path | None = None) -> tuple[Path, float]:
    """The Evidently environment's Python, created when missing; and the seconds creation took (0
    when it already existed). ``pip_cache=False`` installs with ``--no-cache-dir`` (a cold install).

    Raises EvidentlyUnavailable, with pip's last lines, when creation fails.
    """
    target = target or environment_dir()
    if (target / _STAMP).exists():
        return _python(target), 0.0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _STAMP).exists():  # another process built it while this one waited
            return _python(target), 0.0
        shutil.rmtree(target, ignore_errors=True)  # a half-built one left by a killed run
        started = time.perf_counter()
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [[base, "-m", "venv", str(target)],
                 [str(_python(target)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  "--no-input", *([] if pip_cache else ["--no-cache-dir"]), *REQUIREMENTS]]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EvidentlyUnavailable(f"could not create the Evidently environment at {target}: "
                                           f"{' '.join(step[1:4])} did not finish ({type(exc).__name__})") from None
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
                raise EvidentlyUnavailable(f"could not create the Evidently environment at {target} "
                                           f"({' '.join(REQUIREMENTS)}): {' '.join(step[1:4])} exited "
                                           f"{done.returncode}:\n{tail}")
        seconds = time.perf_counter() - started
        (target / _STAMP).write_text(json.dumps({"requirements": list(REQUIREMENTS), "seconds": round(seconds, 1)}))
        return _python(target), seconds


def worker(request: dict[str, Any], *, timeout_s: float = 900) -> dict[str, Any]:
    """Run ``_evidently_worker.py`` on ``request`` in the Evidently environment and return its answer.

    Raises EvidentlyUnavailable when the environment cannot be created or the worker fails.
    """
    python, _ = ensure_environment()
    environment = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    environment.pop("PYTHONPATH", None)
    try:
        done = subprocess.run([str(python), str(WORKER)], input=json.dumps(request), capture_output=True, text=True,
                              timeout=timeout_s, env=environment, check=False)
    except subprocess.TimeoutExpired:
        raise EvidentlyUnavailable(f"Evidently's worker did not answer within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise EvidentlyUnavailable(f"Evidently's worker exited {done.returncode}:\n{tail}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer
