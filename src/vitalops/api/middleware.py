"""Request ids, Prometheus metrics and the last line of defence, as one pure ASGI middleware.

An exception no handler took becomes a problem+json 500 here, inside the request's context, so it
carries the request id (body and header) like every other error, and it is logged as its type,
the request id and the route, never its text (which may hold a patient's values). Nothing is
re-raised to the server, whose own traceback would print that text.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vitalops.api.problems import problem
from vitalops.core.logging import request_id_var

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")
log = logging.getLogger("vitalops.api.access")
error_log = logging.getLogger("vitalops.api")


class ApiMetrics:
    """The service's Prometheus collectors, in a registry owned by one app (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vitalops_http_requests_total", "HTTP requests by route and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "vitalops_http_request_duration_seconds", "HTTP request latency by route",
            ["method", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class RequestContextMiddleware:
    """Give every request an id (kept from ``X-Request-ID`` when well formed), echo it, time it."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = incoming.decode() if _VALID_REQUEST_ID.match(incoming) else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            if message["type"] == "http.response.start":
                started_response = True
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:  # noqa: BLE001 - the boundary: no exception reaches the server
            status = 500
            error_log.error("unexpected error", extra={
                "error_type": type(exc).__name__, "route": _route_template(scope), "method": scope["method"]})
            if not started_response:
                await _send_internal_error(send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            log.info("request", extra={"method": method, "route": route, "status": status,
                                       "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)


async def _send_internal_error(send: Send) -> None:
    response = problem(500, "internal_error", "Internal error", "an unexpected error occurred; quote the request id")
    await send({"type": "http.response.start", "status": 500, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _route_template(scope: Scope) -> str:
    # The template ("/v1/models/{name}"), never the concrete path, which may carry identifiers.
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
