"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitalops import __version__
from vitalops.api.deps import DatabaseDep
from vitalops.api.problems import problem
from vitalops.db.migrate import current_revision, head_revision
from vitalops.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/")
def index() -> dict[str, str]:
    """Where to go from here (the dashboard will live at this address)."""
    return {"name": "VitalOps", "version": __version__, "docs": "/docs", "openapi": "/openapi.json",
            "health": "/healthz", "ready": "/readyz", "metrics": "/metrics"}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(database: DatabaseDep) -> dict[str, str] | Response:
    """The database answers and its schema is at this release's migration head."""
    try:
        database.ping()
        revision = current_revision(database)
    except ServiceUnavailable:
        return problem(503, "service_unavailable", "Not ready", "the metadata database is unreachable")
    head = head_revision()
    if revision != head:
        return problem(503, "service_unavailable", "Not ready",
                       f"database schema is at {revision}, this release needs {head}")
    return {"status": "ready", "database": database.dialect, "revision": head}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition of request counts and latency by route and status."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
