"""The FastAPI application factory. Nothing is created at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vitalops import __version__
from vitalops.api.middleware import ApiMetrics, RequestContextMiddleware
from vitalops.api.openapi import install_docs
from vitalops.api.problems import install_problem_handlers
from vitalops.api.routes import (
    alerts,
    audit,
    cdshooks,
    deployments,
    health,
    models,
    monitoring,
    predictions,
    review,
    sites,
    users,
)
from vitalops.auth.denials import WINDOW_SECONDS, DenialWindows
from vitalops.core.logging import configure_logging, redact_server_logs
from vitalops.core.settings import Settings, get_settings
from vitalops.db import Database
from vitalops.db.migrate import upgrade

ROUTERS = (
    health.router, audit.router, users.router, users.self_service, sites.router, models.router, deployments.router,
    predictions.router, cdshooks.router, review.router, monitoring.router, alerts.router, alerts.incidents_router,
)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the API. Migrations are applied at start-up (serialized across workers on PostgreSQL)."""
    settings = settings or get_settings()
    owns_database = database is None
    database = database or Database(settings.db_url)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    denials = DenialWindows()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # After the server configured its own logging: its tracebacks would print exception text.
        redact_server_logs(json_lines=settings.log_json)
        upgrade(database)
        flusher = asyncio.create_task(_flush_denials_periodically(denials, database))
        await monitoring.start_monitoring(app, settings, database)
        yield
        await monitoring.stop_monitoring(app)
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        denials.flush(database, everything=True)
        if owns_database:
            database.dispose()

    app = FastAPI(
        title="VitalOps",
        version=__version__,
        description="Clinical AI operations: governed models from FHIR to the clinician's screen.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from the package, without a CDN
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.metrics = ApiMetrics()
    app.state.denials = denials
    install_problem_handlers(app)
    review.install_review_metrics(app, database)
    alerts.install_alert_metrics(app, database)
    monitoring.install_monitoring(app, settings, database)
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app


async def _flush_denials_periodically(denials: DenialWindows, database: Database) -> None:
    """Write closed windows of failed-authentication counts even when no further failure comes."""
    while True:
        await asyncio.sleep(WINDOW_SECONDS)
        with contextlib.suppress(Exception):  # a database hiccup: the counts wait for the next flush
            await asyncio.to_thread(denials.flush, database)
