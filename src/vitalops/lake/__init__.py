"""The lake: Delta Lake tables for facts, quarantine and datasets, and the point-in-time rule."""

from vitalops.core import memory as _memory  # noqa: E402 - Arrow's pool before the first table is read

_memory.use_platform_memory_pool()
