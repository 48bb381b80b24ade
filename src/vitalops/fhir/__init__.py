"""FHIR R4: streaming NDJSON and Bundle readers, and the Bulk Data client with SMART Backend Services."""
