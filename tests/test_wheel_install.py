"""The wheel, installed into a fresh virtual environment, runs the platform without the source tree.

How the test stays cheap and offline while still proving the wheel's own contents:

- **Build.** The files a release is built from (``src/``, ``pyproject.toml``, ``hatch_build.py``,
  ``README.md``) are copied to a temporary folder, without caches or a compiled module, and built
  there by ``python -m build --no-isolation``: an sdist, then the wheel from the unpacked sdist, as
  a release is made. ``VITALOPS_NATIVE=0`` makes the build hook skip the C module, so this is the
  wheel a machine without a C compiler gets; the test checks it holds no compiled file. (Building
  a copy leaves the checkout's own compiled module alone: the hook deletes stale builds next to
  the sources it builds from.) ``build`` and ``hatchling`` come from the dev extra, so nothing is
  downloaded.
- **Install.** ``python -m venv --without-pip`` makes the environment and this suite's pip installs
  the wheel into it with ``--no-deps --no-index``: only the wheel's files land in it.
- **Dependencies.** A ``.pth`` file in the new environment lists this suite's site-packages as a
  plain path, after the new environment's own. Python appends such a path without reading the
  ``.pth`` files inside it, so an editable install of vitalops there (a path to ``src/``) is never
  activated; the test asserts that ``vitalops`` is imported from the new environment. The wheel's
  declared requirements are checked separately: its core requirements name no GPU library and no
  extra's package, and every one of them is installed.
- **Run.** ``vitalops init``, ``vitalops demo --no-serve`` and ``vitalops serve`` (GET /healthz on a
  free loopback port, then stopped) run from a folder outside the checkout, with a new
  ``VITALOPS_HOME`` and no ``PYTHONPATH`` or other ``VITALOPS_`` settings.

The real install from PyPI (sizes, install time, demo time) is measured by ``bench/bench_install.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RELEASE_FILES = ("pyproject.toml", "hatch_build.py", "README.md")
COMPILED = (".so", ".pyd", ".dylib", ".dll")
NOT_PACKAGE_DATA = (".py", ".pyc", ".c", ".h", *COMPILED)
GPU_OR_EXTRA = ("nvidia", "xgboost", "onnxruntime", "lightgbm", "distributed", "dask", "psycopg", "cuda")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    python: Path
    vitalops: Path
    site_packages: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.vitalops), *args], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)


def _release_copy(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *(f"*{suffix}" for suffix in COMPILED))
    shutil.copytree(REPO / "src", target / "src", ignore=ignore)
    for name in RELEASE_FILES:
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    for tool in ("build", "hatchling"):
        try:
            distribution(tool)
        except PackageNotFoundError:
            pytest.fail(f"'{tool}' is missing: install the dev extra (pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("wheel")
    source = _release_copy(root / "source")
    dist = root / "dist"
    build_env = {**os.environ, "VITALOPS_NATIVE": "0"}
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir", str(dist),
         str(source)], env=build_env, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("vitalops-*.whl")
    (sdist,) = dist.glob("vitalops-*.tar.gz")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_packages / "_vitalops_test_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))

    workdir = root / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("VITALOPS_") and key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"VITALOPS_HOME": str(root / "home"), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    return Installed(wheel, sdist, python, venv / "bin" / "vitalops", site_packages, workdir, env)


def test_the_wheel_holds_the_package_data_and_nothing_compiled(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert not [name for name in names if name.endswith(COMPILED)], "VITALOPS_NATIVE=0 must build a pure wheel"
    assert installed.wheel.name.endswith("-py3-none-any.whl")
    package = REPO / "src"
    data = sorted(
        str(path.relative_to(package)) for path in (package / "vitalops").rglob("*")
        if path.is_file() and not path.name.endswith(NOT_PACKAGE_DATA) and "__pycache__" not in path.parts)
    assert "vitalops/db/migrations/script.py.mako" in data and "vitalops/deid/rules.toml" in data
    assert [name for name in data if name not in names] == []
    assert "vitalops/db/migrations/versions/0001_foundation.py" in names
    sdist_names = subprocess.run(["tar", "-tzf", str(installed.sdist)], capture_output=True, text=True,
                                 check=True).stdout
    assert "src/vitalops/ingest/_native.c" in sdist_names and "hatch_build.py" in sdist_names


def test_the_core_requirements_are_lean_and_installed(installed: Installed) -> None:
    metadata = zipfile.ZipFile(installed.wheel).read("vitalops-0.1.0.dist-info/METADATA").decode()
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ")]
    core = [requirement for requirement in requires if "extra ==" not in requirement]
    assert core and not [r for r in core if r.split("[")[0].split(">")[0].strip().lower().startswith(GPU_OR_EXTRA)]
    for requirement in core:
        name = requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip()
        distribution(name)  # PackageNotFoundError if the environment lacks a core requirement
    assert "Provides-Extra: all" in metadata and "Provides-Extra: dev" in metadata


def test_init_demo_and_serve_from_the_wheel(installed: Installed) -> None:
    where = subprocess.run(
        [str(installed.python), "-c",
         "import json, vitalops, vitalops.ingest.native as n; "
         "print(json.dumps({'file': vitalops.__file__, 'native': n.NATIVE}))"],
        cwd=installed.workdir, env=installed.env, capture_output=True, text=True, check=True)
    imported = json.loads(where.stdout)
    assert Path(imported["file"]).is_relative_to(installed.site_packages) and imported["native"] is False

    init = installed.run("init", "--json")
    assert init.returncode == 0, init.stderr[-3000:]
    demo = installed.run("demo", "--no-serve", "--no-scenarios", "--json", timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    summary = json.loads(demo.stdout)
    assert summary["models"]["models"]["deterioration"]["champion"] == {"north": 1, "south": 1, "east": 1}
    assert summary["audit"]["ok"] is True

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(installed.vitalops), "serve", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=installed.workdir, env=installed.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200, server.stderr.read() if server.poll() else ""
    finally:
        server.terminate()
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
