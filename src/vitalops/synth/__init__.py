"""The synthetic multi-site hospital: FHIR R4 bulk NDJSON with known ground truth and scenarios.

``generate_hospital(out_dir, patients=..., sites=[...], seed=...)`` writes one NDJSON file per
resource type, ``ground_truth.jsonl`` (true risks and outcomes) and ``identifiers.json`` (every
planted direct identifier). Same seed, same bytes.
"""

from __future__ import annotations

from vitalops.synth.hospital import DEFAULT_END, DEFAULT_START, generate_hospital
from vitalops.synth.scenarios import SCENARIOS
from vitalops.synth.summary import SynthSummary
from vitalops.synth.writer import GROUND_TRUTH_FILE, IDENTIFIERS_FILE, RESOURCE_TYPES

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
