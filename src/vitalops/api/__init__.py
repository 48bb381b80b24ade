"""The HTTP API: a FastAPI app factory, dependencies, one router per resource, problem+json errors."""
