"""VitalOps: clinical AI operations."""

__version__ = "0.1.0"
