"""Counts of prediction requests that failed, for ``ops.error_rate`` and ``ops.input_error_rate``.

A prediction that fails leaves no row in the prediction log (its row and audit event commit
together or not at all), so a failure is counted here instead: once the request has reached a
known model at a registered site, an error raised while scoring it adds one to the hour's
counter of its model, version, site and error code (``serving_error_counts``), in a transaction
of its own after the failed one was rolled back. Requests refused before that (authentication,
permission, a malformed body, an unregistered site, an unknown model) are not a model's failures
and are not counted. A CDS Hooks call is a request to one model's service, at its EHR's site, so
``cdshooks`` counts the calls it refuses or fails outside scoring too, by the model's name (version
0), authentication and permission refusals excepted. A counter that cannot be written (the
database is down) is logged without data and never hides the request's own error.

The class of a failure is the HTTP status its error answers with: below 500 the request was at
fault (a missing input, a value beyond the plan's tolerance, an unknown patient), 500 and over
the service was (an artifact that fails verification, an unexpected exception).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vitalops.db.tables.registry import ModelRow
from vitalops.db.tables.serving import ServingErrorCountRow
from vitalops.errors import VitalOpsError

log = logging.getLogger("vitalops.serving.failures")
HOUR_US = 3_600_000_000
#: The code and status of an exception that is not one of ours (the API answers it the same way).
INTERNAL_ERROR = ("internal_error", 500)


@dataclass
class Attempt:
    """What is known of a request as it goes: its model once resolved (or only its name, resolved when
    a failure is counted), the version being scored."""

    site: str
    at: datetime
    served: bool = True
    model_id: int | None = None
    version: int = 0
    model: str | None = None


def error_class(error: BaseException) -> tuple[str, int]:
    """The stable code and HTTP status of ``error`` (``internal_error``, 500 for one not ours)."""
    if isinstance(error, VitalOpsError):
        return error.code, error.http_status
    return INTERNAL_ERROR


def hour_start(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC hour."""
    return moment.replace(minute=0, second=0, microsecond=0)


def count_failure(session: Session, attempt: Attempt, error: BaseException) -> None:
    """Add one to the counter of ``attempt``'s hour and ``error``'s code, in the caller's transaction;
    nothing when the model is known only by a name that no model has."""
    model_id = attempt.model_id
    if model_id is None:
        model_id = session.scalar(select(ModelRow.id).where(ModelRow.name == attempt.model))
        if model_id is None:
            return
    code, status = error_class(error)
    values = {"model_id": model_id, "version": attempt.version, "site": attempt.site,
              "hour_start": hour_start(attempt.at), "served": attempt.served, "code": code, "http_status": status,
              "count": 1}
    dialect: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(ServingErrorCountRow).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=["model_id", "version", "site", "hour_start", "served", "code"],
        set_={"count": ServingErrorCountRow.count + 1, "http_status": statement.excluded.http_status}))


def record_failure(write: Callable[[Callable[[Session], None]], None], attempt: Attempt,
                   error: BaseException) -> None:
    """Count ``error`` against ``attempt``'s model through ``write`` (a committed transaction of its
    own); nothing when neither the model nor its name is known. Never raises: the caller re-raises
    ``error``."""
    if attempt.model_id is None and attempt.model is None:
        return
    try:
        write(lambda session: count_failure(session, attempt, error))
    except Exception as failure:  # noqa: BLE001 - the request's own error is the one to raise
        log.warning("a failed prediction could not be counted", extra={"error_type": type(failure).__name__})
