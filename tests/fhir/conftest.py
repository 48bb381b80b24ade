from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / ".cache" / "fhir-examples"


@pytest.fixture(scope="session")
def hl7_examples() -> Path:
    """The official FHIR R4 examples (hl7.fhir.r4.examples@4.0.1), fetched once into .cache."""
    if not (EXAMPLES / "package").is_dir():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed to fetch hl7.fhir.r4.examples; install Node.js")
        subprocess.run(["sh", str(ROOT / "scripts" / "fetch_fhir_examples.sh"), str(EXAMPLES)], check=True)
    return EXAMPLES / "package"
