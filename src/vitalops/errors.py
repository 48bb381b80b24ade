"""The exception tree of VitalOps, with the CLI exit code and HTTP status of each error.

::

    VitalOpsError                      500  exit 1
    ├── InvalidInput                   422  exit 2   bad arguments, specs, files, bodies
    │   ├── BadRequest                 400  exit 2   a protocol body that is not what the standard defines (CDS Hooks)
    │   └── ConfigError                500  exit 2   settings that cannot work (missing secret, bad URL)
    │       └── MissingExtra           500  exit 2   an optional dependency is not installed (names the extra)
    ├── NotFound                       404  exit 2
    ├── Conflict                       409  exit 2   duplicate, or an illegal state transition
    ├── Unauthenticated                401  exit 2
    ├── PermissionDenied               403  exit 2
    ├── PolicyViolation                403  exit 2   allowed role, forbidden act (self-approval, ...)
    ├── PreconditionFailed             412  exit 2   data the call needs is neither given nor obtainable (CDS Hooks)
    ├── CheckFailed                    422  exit 1   a check ran and found a problem
    │   ├── GateFailed                 409  exit 1   a PCCP gate blocked a candidate
    │   └── IntegrityError             500  exit 1   a hash chain or artifact digest does not match
    └── ServiceUnavailable             503  exit 2   the database or another backing service is unreachable

Every message is written by us and must never contain patient data: it names the file, line,
field or object id that is wrong, never the value of a patient's field. ``details`` carries
structured, equally PHI-free context (for problem+json and ``--json`` output).
"""

from __future__ import annotations

from typing import Any


class VitalOpsError(Exception):
    """Base of every error the platform raises on purpose."""

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description: stable code, safe message, structured details."""
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


class InvalidInput(VitalOpsError):
    code = "invalid_input"
    http_status = 422
    exit_code = 2


class BadRequest(InvalidInput):
    """A request body that is not what its standard defines (CDS Hooks answers 400, naming the field)."""

    code = "bad_request"
    http_status = 400


class ConfigError(InvalidInput):
    code = "config_error"
    http_status = 500


class MissingExtra(ConfigError):
    """What was asked for needs an optional part of VitalOps that this installation lacks.

    ``details`` names the missing module and the extra that provides it.
    """

    code = "missing_extra"


class NotFound(VitalOpsError):
    code = "not_found"
    http_status = 404
    exit_code = 2


class Conflict(VitalOpsError):
    code = "conflict"
    http_status = 409
    exit_code = 2


class Unauthenticated(VitalOpsError):
    code = "unauthenticated"
    http_status = 401
    exit_code = 2


class PermissionDenied(VitalOpsError):
    code = "permission_denied"
    http_status = 403
    exit_code = 2


class PolicyViolation(VitalOpsError):
    code = "policy_violation"
    http_status = 403
    exit_code = 2


class PreconditionFailed(VitalOpsError):
    """Data the call needs was neither sent nor can be fetched (CDS Hooks: a prefetch key missing
    without a FHIR server and token to fetch it)."""

    code = "precondition_failed"
    http_status = 412
    exit_code = 2


class CheckFailed(VitalOpsError):
    code = "check_failed"
    http_status = 422
    exit_code = 1


class GateFailed(CheckFailed):
    code = "gate_failed"
    http_status = 409


class IntegrityError(CheckFailed):
    code = "integrity_error"
    http_status = 500


class ServiceUnavailable(VitalOpsError):
    code = "service_unavailable"
    http_status = 503
    exit_code = 2
