"""A new user's first run, measured: the wheel installed into fresh environments, then the demo.

1. Builds the wheel as a release is built (``python -m build --no-isolation`` on a copy of the
   sources: an sdist, then the wheel from it; the C module is compiled when a compiler is there,
   ``--pure`` builds without it as ``VITALOPS_NATIVE=0`` does).
2. For ``vitalops`` and ``vitalops[all]``: a new ``python -m venv`` (with the pip it bundles) and a
   timed ``pip install`` of the wheel from PyPI. pip's package cache is the machine's own, so the
   first run on a machine is a cold install (downloads) and later runs are warm (the bench says which
   it saw); ``--cold`` gives pip an empty cache. Reports each environment's size on disk and any
   GPU library in it (NVIDIA, CUDA, NCCL).
3. In the environment without extras, from a folder outside the checkout and a new home:
   ``vitalops demo --no-serve`` timed, then ``vitalops serve`` until GET /healthz answers. "From
   nothing to serving" adds the venv, the install, the demo and the server start.

It takes about 3-4 minutes with a warm cache (``--no-extras`` skips the ``[all]`` environment).
Figures: sizes in MB and times in s (absolute, so they depend on the machine and the network,
unlike the other benches' ratios).

Run: .venv/bin/python bench/bench_install.py [--cold] [--pure] [--no-extras] [--keep]
Targets: environment without extras under 900 MB; no GPU library by default; from nothing to
serving under 3 minutes on 2 cores with a warm cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _results import machine, record

REPO = Path(__file__).resolve().parents[1]
GPU_MARKERS = ("nvidia", "cuda", "nccl", "cudnn", "cublas")
TARGET_CORE_MB = 900
TARGET_TO_SERVING_S = 180


def tree_megabytes(folder: Path) -> float:
    """Bytes of the files under ``folder`` (symlinks not followed), in MB (10^6)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total / 1e6


def gpu_libraries(venv: Path) -> list[str]:
    found = set()
    for path in venv.rglob("*"):
        lowered = path.name.lower()
        if any(marker in lowered for marker in GPU_MARKERS) and (path.is_dir() or ".so" in lowered):
            found.add(str(path.relative_to(venv)).split("/site-packages/")[-1].split("/")[0])
    return sorted(found)


def build_wheel(work: Path, pure: bool) -> Path:
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "hatch_build.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    env = {**os.environ, **({"VITALOPS_NATIVE": "0"} if pure else {})}
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check", "--outdir",
                    str(work / "dist"), str(source)], env=env, check=True, capture_output=True, timeout=600)
    (wheel,) = (work / "dist").glob("vitalops-*.whl")
    return wheel


def fresh_install(work: Path, name: str, requirement: str, cache: Path | None) -> tuple[Path, float, float]:
    """A new venv with ``requirement`` installed: (venv, seconds for venv, seconds for pip install)."""
    venv = work / name
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    venv_seconds = time.perf_counter() - started
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement]
    if cache is not None:
        command[4:4] = ["--cache-dir", str(cache)]
    started = time.perf_counter()
    subprocess.run(command, check=True, timeout=1800)
    return venv, venv_seconds, time.perf_counter() - started


def clean_env(home: Path, venv: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("VITALOPS_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"VITALOPS_HOME": str(home), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}


def demo_then_serve(work: Path, venv: Path) -> tuple[float, float]:
    """Seconds of ``vitalops demo --no-serve`` on a new home, then of ``serve`` until /healthz answers."""
    home, cwd = work / "home", work / "elsewhere"
    cwd.mkdir()
    env = clean_env(home, venv)
    vitalops = str(venv / "bin" / "vitalops")
    started = time.perf_counter()
    demo = subprocess.run([vitalops, "demo", "--no-serve", "--json"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)
    demo_seconds = time.perf_counter() - started
    if demo.returncode != 0:
        raise SystemExit(f"the demo failed:\n{demo.stderr[-3000:]}")
    json.loads(demo.stdout)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    server = subprocess.Popen([vitalops, "serve", "--port", str(port)], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit("the server did not answer /healthz") from None
                time.sleep(0.1)
        serve_seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    return demo_seconds, serve_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="give pip an empty package cache (downloads all)")
    parser.add_argument("--pure", action="store_true", help="build the wheel without the C module")
    parser.add_argument("--no-extras", action="store_true", help="skip the vitalops[all] environment")
    parser.add_argument("--keep", action="store_true", help="keep the environments (printed) for a look")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install-"))
    cache = work / "pip-cache" if args.cold else None
    cache_state = "cold: an empty pip cache" if args.cold else "pip's own cache on this machine"
    print(f"machine: {machine()}; pip cache: {cache_state}")
    try:
        started = time.perf_counter()
        wheel = build_wheel(work, args.pure)
        print(f"wheel: {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB), built in "
              f"{time.perf_counter() - started:.1f} s")
        environments = [("core", str(wheel))] + ([] if args.no_extras else [("all", f"{wheel}[all]")])
        installed = {}
        for name, requirement in environments:
            venv, venv_seconds, pip_seconds = fresh_install(work, name, requirement, cache)
            size, gpu = tree_megabytes(venv), gpu_libraries(venv)
            installed[name] = (venv, venv_seconds, pip_seconds)
            print(f"vitalops{'' if name == 'core' else '[all]':6s}: venv {venv_seconds:5.1f} s, pip install "
                  f"{pip_seconds:6.1f} s, environment {size:6.0f} MB, GPU libraries: {', '.join(gpu) or 'none'}")
            label = "without extras" if name == "core" else "with every extra ([all])"
            record(f"install.env_{name}_mb", size, better="lower", unit="MB",
                   note=f"size of a fresh venv with the wheel {label} installed (target core < {TARGET_CORE_MB})")
            record(f"install.pip_{name}_seconds", pip_seconds, better="lower", unit="s",
                   note=f"pip install of the wheel {label} into a new venv ({cache_state}); machine- and "
                        "network-dependent")
            if name == "core" and gpu:
                print(f"  NOT MET: GPU libraries installed by default: {', '.join(gpu)}")
        venv, venv_seconds, pip_seconds = installed["core"]
        demo_seconds, serve_seconds = demo_then_serve(work, venv)
        total = venv_seconds + pip_seconds + demo_seconds + serve_seconds
        print(f"vitalops demo --no-serve on a new home: {demo_seconds:.1f} s; serve until /healthz answers: "
              f"{serve_seconds:.1f} s")
        verdict = "met" if total < TARGET_TO_SERVING_S else "NOT MET"
        print(f"from nothing to serving (venv + install + demo + server start): {total:.1f} s "
              f"(target < {TARGET_TO_SERVING_S} s with a warm cache: {verdict})")
        record("install.demo_seconds", demo_seconds, better="lower", unit="s",
               note="vitalops demo --no-serve on a new home, from the wheel without extras; machine-dependent")
        record("install.nothing_to_serving_seconds", total, better="lower", unit="s",
               note=f"new venv, pip install ({cache_state}), demo, serve until /healthz; machine-dependent")
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
