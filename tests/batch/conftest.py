"""Batch scoring reuses the served deterioration model (champion at north and south) and the
session's synthetic hospital lake."""

from __future__ import annotations

from tests.features.conftest import demo_sets, hospital_lake  # noqa: F401 - fixtures
from tests.serving.conftest import served  # noqa: F401 - fixture
