"""The synthetic multi-site hospital: FHIR R4 bulk NDJSON with known ground truth and scenarios.

``generate_hospital(out_dir, patients=..., sites=[...], seed=...)`` writes one NDJSON file per
resource type, ``ground_truth.jsonl`` (true risks and outcomes) and ``identifiers.json`` (every
planted direct identifier). Same seed, same bytes.

The names load on first use, so that the command line can name the scenarios without numpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from vitalops.synth.scenarios import SCENARIOS

_EXPORTS = {
    "DEFAULT_END": "vitalops.synth.hospital",
    "DEFAULT_START": "vitalops.synth.hospital",
    "generate_hospital": "vitalops.synth.hospital",
    "SynthSummary": "vitalops.synth.summary",
    "GROUND_TRUTH_FILE": "vitalops.synth.writer",
    "IDENTIFIERS_FILE": "vitalops.synth.writer",
    "RESOURCE_TYPES": "vitalops.synth.writer",
}

__all__ = [
    "DEFAULT_END",
    "DEFAULT_START",
    "GROUND_TRUTH_FILE",
    "IDENTIFIERS_FILE",
    "RESOURCE_TYPES",
    "SCENARIOS",
    "SynthSummary",
    "generate_hospital",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vitalops.synth' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from vitalops.synth.hospital import DEFAULT_END, DEFAULT_START, generate_hospital
    from vitalops.synth.summary import SynthSummary
    from vitalops.synth.writer import GROUND_TRUTH_FILE, IDENTIFIERS_FILE, RESOURCE_TYPES
