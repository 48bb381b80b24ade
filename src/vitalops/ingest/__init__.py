"""Ingest: FHIR resources to pseudonymous bitemporal facts, in idempotent, crash-safe batches."""
