"""The HTTP side of the Bulk Data client: bearer tokens, bounded retries of transient failures
(429, 502-504, broken connections) honouring ``Retry-After``, and streamed downloads with their
sha256. Errors carry the HTTP status and the server's OperationOutcome issue code, never its
diagnostics text.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from vitalops.core.clock import utcnow
from vitalops.errors import InvalidInput, PermissionDenied, ServiceUnavailable, Unauthenticated
from vitalops.fhir.smart import BackendServicesAuth

#: Consecutive transient failures (429, 502-504, transient 5xx, broken connections) tolerated per request.
MAX_TRANSIENT_RETRIES = 4
#: The longest wait a server's Retry-After can impose on one step (seconds).
MAX_RETRY_AFTER_SECONDS = 120.0
BACKOFF_START_SECONDS = 0.5
_ISSUE_CODE = re.compile(r"^[a-z][a-z\-]{0,39}$")


def issue_code(response: httpx.Response) -> str | None:
    """The first OperationOutcome issue code of ``response`` (a code from a fixed value set), if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    issues = body.get("issue")
    if not isinstance(issues, list) or not issues or not isinstance(issues[0], dict):
        return None
    code = issues[0].get("code")
    return code if isinstance(code, str) and _ISSUE_CODE.match(code) else None


def is_transient(response: httpx.Response) -> bool:
    """True for a failure worth retrying: 429, 502-504, or a 5xx that is not a definite export error."""
    status = response.status_code
    if status in (429, 502, 503, 504):
        return True
    if status >= 500:
        code = issue_code(response)
        return code is None or code in ("transient", "throttled", "timeout")
    return False


class BulkTransport:
    """Sends Bulk Data requests with the bearer token, retrying transient failures (bounded)."""

    def __init__(self, http: httpx.Client, auth: BackendServicesAuth | None) -> None:
        self.http = http
        self.auth = auth

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def retry_after(self, response: httpx.Response) -> float | None:
        """The server's Retry-After in seconds (delta-seconds or an HTTP date), capped; None when absent."""
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        if value.isdigit():
            return min(float(value), MAX_RETRY_AFTER_SECONDS)
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return min(max(0.0, (moment - utcnow()).total_seconds()), MAX_RETRY_AFTER_SECONDS)

    def _headers(self, accept: str, *, send_token: bool, prefer_async: bool = False) -> dict[str, str]:
        headers = {"Accept": accept}
        if prefer_async:
            headers["Prefer"] = "respond-async"
        if send_token and self.auth is not None:
            headers["Authorization"] = f"Bearer {self.auth.access_token(self.http)}"
        return headers

    def _wait_before_retry(self, attempt: int, response: httpx.Response | None) -> None:
        wait = self.retry_after(response) if response is not None else None
        self.sleep(wait if wait is not None else BACKOFF_START_SECONDS * 2 ** (attempt - 1))

    def request(self, method: str, url: str, *, accept: str, prefer_async: bool = False) -> httpx.Response:
        """Send one request; transient failures are retried; the final response is returned as is.

        A 401 renews the access token once. Raises ServiceUnavailable when the server cannot be
        reached after the retries.
        """
        attempt, renewed = 0, False
        while True:
            headers = self._headers(accept, send_token=True, prefer_async=prefer_async)
            try:
                response = self.http.request(method, url, headers=headers)
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > MAX_TRANSIENT_RETRIES:
                    raise ServiceUnavailable(f"FHIR server unreachable ({type(exc).__name__})") from exc
                self._wait_before_retry(attempt, None)
                continue
            if response.status_code == 401 and self.auth is not None and not renewed:
                self.auth.invalidate()
                renewed = True
                continue
            if is_transient(response) and attempt < MAX_TRANSIENT_RETRIES:
                attempt += 1
                self._wait_before_retry(attempt, response)
                continue
            return response

    def release(self, status_url: str) -> None:
        """Tell the server the files are fetched (DELETE on the status URL); failures are ignored."""
        try:
            self.http.request(
                "DELETE", status_url, headers=self._headers("application/json", send_token=True)
            )
        except (httpx.TransportError, ServiceUnavailable, Unauthenticated):
            return

    def download(self, url: str, target: Path, *, send_token: bool) -> tuple[int, str]:
        """Stream ``url`` into ``target`` through ``target.part``; returns (bytes, sha256 hex).

        Raises ServiceUnavailable after repeated transient failures, Unauthenticated /
        PermissionDenied / InvalidInput when the server refuses the file.
        """
        part = target.with_name(target.name + ".part")
        attempt, renewed = 0, False
        while True:
            headers = self._headers("application/fhir+ndjson", send_token=send_token)
            try:
                with self.http.stream("GET", url, headers=headers) as response:
                    if response.status_code == 200:
                        size, digest = _stream_to(response, part)
                        os.replace(part, target)
                        return size, digest
                    response.read()
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > MAX_TRANSIENT_RETRIES:
                    raise ServiceUnavailable(
                        f"download of {target.name} kept failing ({type(exc).__name__})"
                    ) from exc
                self._wait_before_retry(attempt, None)
                continue
            if response.status_code == 401 and send_token and self.auth is not None and not renewed:
                self.auth.invalidate()
                renewed = True
                continue
            if is_transient(response):
                attempt += 1
                if attempt > MAX_TRANSIENT_RETRIES:
                    raise ServiceUnavailable(
                        f"download of {target.name} kept failing: HTTP {response.status_code}"
                    )
                self._wait_before_retry(attempt, response)
                continue
            message = f"download of {target.name} refused: HTTP {response.status_code}"
            if response.status_code == 401:
                raise Unauthenticated(message)
            if response.status_code == 403:
                raise PermissionDenied(message)
            raise (InvalidInput if response.status_code < 500 else ServiceUnavailable)(message)


def _stream_to(response: httpx.Response, part: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with part.open("wb") as handle:
        for chunk in response.iter_bytes(1 << 16):
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return size, digest.hexdigest()
