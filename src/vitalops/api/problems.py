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
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitalops.core.logging import request_id_var
from vitalops.errors import VitalOpsError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("vitalops.api")


class ProblemField(BaseModel):
    """One invalid field: where it is and what kind of problem, never its value."""

    location: str = Field(examples=["query.limit"])
    problem: str = Field(examples=["less_than_equal"])
    allowed: str | None = Field(default=None, description="the values the field accepts, when they are a list")


class Problem(BaseModel):
    """The body of every error (RFC 9457 problem details, ``application/problem+json``)."""

    type: str = Field(examples=["https://vitalops.dev/problems/not_found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    code: str = Field(description="a stable machine-readable code", examples=["not_found"])
    detail: str = Field(description="a message written by VitalOps; never carries patient data")
    request_id: str | None = Field(description="the request's id, also in the X-Request-ID header")
    errors: list[ProblemField] | None = Field(default=None, description="the invalid fields (422 only)")
    details: dict[str, Any] | None = Field(default=None, description="structured context, PHI-free")


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


_LIST_PROBLEMS = frozenset({"literal_error", "enum"})


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, str]] = []
    for error in exc.errors():
        entry = {"location": ".".join(str(part) for part in error.get("loc", ())),
                 "problem": str(error.get("type", "invalid"))}
        expected = (error.get("ctx") or {}).get("expected")
        if entry["problem"] in _LIST_PROBLEMS and isinstance(expected, str):
            entry["allowed"] = expected  # our own literals ('json' or 'html'), never the value sent
        errors.append(entry)
    if any(error["problem"] == "json_invalid" for error in errors):
        detail = "the request body is not valid JSON"
    else:
        detail = "the request does not match the expected shape: " + ", ".join(
            e["location"] + (f" (one of {e['allowed']})" if "allowed" in e else "") for e in errors
        )
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
