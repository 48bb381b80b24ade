"""Data quality: rules and reports per batch and per site."""
