"""De-identification with scrub rules as data that block by default: HIPAA Safe Harbor with
``dates="year"``; the date-shift modes are not Safe Harbor (see README.md).

Public API: ``deidentify_path``, ``DeidReport``, ``load_rules``, ``Scrubber``. See README.md in
this folder for the decisions (date offsets, ages over 89, display strings, ZIP codes).
"""

from __future__ import annotations

from vitalops.deid.deidentify import deidentify_path, run_deidentification
from vitalops.deid.report import DeidReport
from vitalops.deid.rules import DEFAULT_RULES_PATH, ScrubRules, load_rules
from vitalops.deid.scrubber import Scrubber

__all__ = ["DEFAULT_RULES_PATH", "DeidReport", "ScrubRules", "Scrubber", "deidentify_path", "load_rules",
           "run_deidentification"]
