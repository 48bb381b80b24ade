"""RiskAssessments POSTed to the EHR's FHIR server: FHIR's create interaction, retried when transient.

``POST [base]/RiskAssessment`` with ``Content-Type: application/fhir+json``; the server answers
``201 Created`` with a ``Location`` of the new resource (``[base]/RiskAssessment/[id]/_history/[vid]``).
A 429 or 502-504 (or a 5xx whose OperationOutcome says it is transient) is retried with
exponential backoff, honouring ``Retry-After``; a 401 renews the SMART Backend Services token
once. Any other answer is a failure that names the HTTP status and the OperationOutcome's issue
code, never the body (which may echo the resource). Only a resource whose subject is the EHR's
own ``Patient/<id>`` reference is sent: a pseudonymous key means nothing to the EHR.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from vitalops.errors import InvalidInput, ServiceUnavailable
from vitalops.fhir.bulk_transport import BACKOFF_START_SECONDS, MAX_RETRY_AFTER_SECONDS, is_transient, issue_code
from vitalops.fhir.smart import BackendServicesAuth

FHIR_JSON = "application/fhir+json"
ATTEMPTS = 4


@dataclass(frozen=True)
class Published:
    """The EHR's answer to one create: the resource's location there, and the attempts it took."""

    location: str
    attempts: int


class RiskAssessmentPublisher:
    """Creates RiskAssessments on one FHIR server (``base_url``), authorized by SMART Backend Services
    when ``auth`` is given."""

    def __init__(self, base_url: str, *, auth: BackendServicesAuth | None = None,
                 http: httpx.Client | None = None, backoff_s: float = BACKOFF_START_SECONDS) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise InvalidInput("the FHIR server to publish to is not an http(s) URL",
                               details={"field": "VITALOPS_FHIR_PUBLISH_URL"})
        self.url = base_url.rstrip("/") + "/RiskAssessment"
        self.auth = auth
        self.http = http or httpx.Client(timeout=15.0)
        self.backoff_s = backoff_s

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self.auth is not None:
            headers["Authorization"] = f"Bearer {self.auth.access_token(self.http)}"
        return headers

    def publish(self, resource: dict[str, Any]) -> Published:
        """Create ``resource`` on the server. InvalidInput when it does not name an EHR Patient;
        ServiceUnavailable (naming the status and issue code) when the server refuses or fails."""
        reference = resource.get("subject", {}).get("reference", "")
        if resource.get("resourceType") != "RiskAssessment" or not str(reference).startswith("Patient/"):
            raise InvalidInput("only a RiskAssessment about the EHR's own Patient reference is published")
        body = orjson.dumps(resource)
        renewed = False
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self.http.post(self.url, content=body, headers=self._headers())
            except httpx.TransportError as exc:
                if attempt == ATTEMPTS:
                    raise ServiceUnavailable(f"the FHIR server is unreachable ({type(exc).__name__})") from None
                self._wait(attempt, None)
                continue
            if response.status_code in (200, 201):
                location = response.headers.get("Location") or response.headers.get("Content-Location") or ""
                return Published(location=_relative(location), attempts=attempt)
            if response.status_code == 401 and self.auth is not None and not renewed:
                self.auth.invalidate()
                renewed = True
                continue
            if is_transient(response) and attempt < ATTEMPTS:
                self._wait(attempt, response)
                continue
            code = issue_code(response)
            raise ServiceUnavailable(
                f"the FHIR server refused the RiskAssessment: HTTP {response.status_code}"
                + (f" ({code})" if code else ""),
                details={"status": response.status_code, "issue": code},
            )
        raise ServiceUnavailable("the FHIR server kept failing the RiskAssessment")

    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff_s * 2 ** (attempt - 1)
        if response is not None:
            after = response.headers.get("Retry-After", "")
            if after.isdigit():
                delay = min(float(after), MAX_RETRY_AFTER_SECONDS)
        time.sleep(delay)

    def close(self) -> None:
        self.http.close()


def _relative(location: str) -> str:
    """``RiskAssessment/<id>[/_history/<vid>]`` of a server's Location (the part after the base)."""
    marker = location.rfind("RiskAssessment/")
    return location[marker:] if marker >= 0 else location[:200]
