"""The lake: Delta Lake tables for facts, quarantine and datasets, and the point-in-time rule."""
