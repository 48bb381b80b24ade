"""Errors as ``application/problem+json`` (RFC 9457) with a stable code.

Only messages we wrote reach the client. Validation errors name the location of the bad field,
never its value; unexpected exceptions become a generic 500 whose details stay in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitalops.core.logging import request_id_var
from vitalops.errors import VitalOpsError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("vitalops.api")


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://vitalops.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": request_id_var.get(),
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


async def _vitalops_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VitalOpsError)
    if exc.http_status >= 500:
        log.error("request failed", extra={"code": exc.code})
    extra = {"details": exc.details} if exc.details else {}
    return problem(exc.http_status, exc.code, _title(exc.code), exc.message, **extra)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": ".".join(str(part) for part in error.get("loc", ())), "problem": error.get("type", "invalid")}
        for error in exc.errors()
    ]
    if any(error["problem"] == "json_invalid" for error in errors):
        detail = "the request body is not valid JSON"
    else:
        detail = "the request does not match the expected shape: " + ", ".join(e["location"] for e in errors)
    return problem(422, "invalid_input", "Invalid input", detail, errors=errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    detail = "no such resource" if exc.status_code == 404 else _title(code)
    return problem(exc.status_code, code, _title(code), detail)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error", extra={"error_type": type(exc).__name__})
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred; quote the request id")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VitalOpsError, _vitalops_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
