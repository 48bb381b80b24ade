"""Build hook: compiles ``vitalops.ingest._native``, the optional C part of bulk ingest.

It needs a C compiler, the Python headers and OpenSSL's headers (``libssl-dev`` on Debian). When
any is missing, or ``VITALOPS_NATIVE=0`` is set, the build goes on without it and ingest uses
its pure-Python path, which gives the same facts more slowly (``vitalops.ingest.native``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/vitalops/ingest/_native.c")
SOURCES = (SOURCE, SOURCE.with_name("observation_scan.c"))
MODULE = "vitalops.ingest._native"


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        for stale in (Path(self.root) / SOURCE.parent).glob("_native*.so"):  # never import an old build
            stale.unlink()
        if os.environ.get("VITALOPS_NATIVE") == "0":
            self.app.display_info("VITALOPS_NATIVE=0: building without the native ingest module")
            return
        try:
            built = _compile(Path(self.root))
        except Exception as exc:  # noqa: BLE001 - any failure to compile leaves the pure-Python path
            self.app.display_warning(f"the native ingest module was not built ({exc}); ingest uses pure Python")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from the source tree
            build_data["force_include"][str(built)] = f"vitalops/ingest/{built.name}"


def _compile(root: Path) -> Path:
    """Compile the module next to its source (where an editable install imports it) and return it."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(
        MODULE,
        [str(root / source) for source in SOURCES],
        depends=[str(root / SOURCE.with_name("native_buffer.h"))],
        libraries=["crypto"],
        extra_compile_args=["-O2", "-std=c99", "-Wall", "-Werror=implicit-function-declaration"],
    )
    with tempfile.TemporaryDirectory() as scratch:
        command = build_ext(Distribution({"name": "vitalops", "ext_modules": [extension]}))
        command.build_lib = str(Path(scratch) / "lib")
        command.build_temp = str(Path(scratch) / "temp")
        command.ensure_finalized()
        command.run()
        built = Path(command.get_ext_fullpath(MODULE))
        target = root / SOURCE.parent / built.name
        shutil.copyfile(built, target)
    return target
