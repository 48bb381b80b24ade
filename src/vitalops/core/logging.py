"""Structured logging that carries a request id and never carries PHI.

Log records are JSON lines. Values under keys that name patient data are replaced, and text
that looks like an identifier (SSN, phone, e-mail, MRN-like numbers, dates of birth) is masked,
so that a careless ``log.info("...", extra={...})`` cannot leak a patient into a log store.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import orjson

from vitalops.core.clock import isoformat_utc, utcnow

request_id_var: ContextVar[str | None] = ContextVar("vitalops_request_id", default=None)

PHI_KEYS = frozenset(
    {
        "name", "given", "family", "mrn", "ssn", "birth_date", "birthdate", "address", "telecom",
        "phone", "email", "patient_id", "source_patient_id", "identifier", "text", "note",
    }
)
_PHI_PATTERNS = [
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # SSN
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),  # e-mail
    re.compile(r"\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b"),  # phone
    re.compile(r"\b(?:MRN|mrn)[:# ]*\w+"),  # labelled MRN
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),  # dates (a birth date is PHI)
]
REDACTED = "[redacted]"
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact_text(text: str) -> str:
    """Mask identifier-shaped substrings."""
    for pattern in _PHI_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with PHI-named keys dropped and identifier-shaped text masked."""
    if key is not None and key.lower() in PHI_KEYS:
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, redacted extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": isoformat_utc(utcnow()),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = redact(value, name)
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception text can carry values from a patient's record.
            entry["exception"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Install the redacting handler on the ``vitalops`` logger (idempotent)."""
    logger = logging.getLogger("vitalops")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_vitalops", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._vitalops = True  # type: ignore[attr-defined]
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_PlainRedactingFormatter())
    logger.addHandler(handler)
    logger.propagate = False


#: The web server's own loggers: their records go through the redacting handler too.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def redact_server_logs(level: str = "WARNING", *, json_lines: bool = True) -> None:
    """Route the web server's loggers through the redacting handler (exception type only, never its text).

    Called by the app at start-up, after the server configured its own logging, so that a traceback
    the server would print (a failing start-up, a protocol error) is one redacted line instead.
    """
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler._vitalops = True  # type: ignore[attr-defined]
        handler.setFormatter(JsonFormatter() if json_lines else _PlainRedactingFormatter())
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False


def server_log_config(level: str = "WARNING", *, json_lines: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn (``log_config=``): its loggers through the redacting formatter."""
    formatter = f"{__name__}.JsonFormatter" if json_lines else f"{__name__}._PlainRedactingFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"redacting": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "redacting", "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
                    for name in SERVER_LOGGERS},
    }


class _PlainRedactingFormatter(logging.Formatter):
    """``LEVEL logger: message`` with identifier-shaped text masked and exceptions as their type only."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {redact_text(record.getMessage())}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" ({record.exc_info[0].__name__})"
        return line
