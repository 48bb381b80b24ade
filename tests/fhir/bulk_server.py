"""A small FHIR Bulk Data Access (v2) server with a SMART Backend Services token endpoint, for tests.

It is the test double of an EHR: a real HTTP server on loopback (``http.server`` in a thread)
that follows the specification: ``$export`` kick-off at system, ``Patient`` and ``Group/[id]``
level with ``Prefer: respond-async``, ``_type``, ``_since`` and ``_outputFormat``; 202 +
``Content-Location``; status polling with ``Retry-After`` and ``X-Progress``; the completion
manifest; NDJSON file downloads guarded by the bearer token when ``requiresAccessToken``; DELETE
of a job; and a token endpoint that verifies the client assertion JWT against the registered
public key (signature, ``iss``/``sub``, ``aud``, ``exp`` at most five minutes ahead, unique ``jti``).
Failure switches let a test break a download, a status poll or a whole job.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import orjson

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NDJSON_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
MAX_ASSERTION_LIFETIME = 300
TOKEN_LIFETIME = 300


@dataclass
class RegisteredClient:
    client_id: str
    public_key_pem: bytes
    scopes: frozenset[str] = frozenset({"system/*.read"})


@dataclass
class ExportJob:
    job_id: str
    request: str
    files: dict[str, tuple[str, bytes, int]]  # name -> (type, body, count)
    transaction_time: str
    polls: int = 0
    deleted: bool = False
    fail_code: str | None = None


@dataclass
class BulkDataServer:
    """Serve ``resources`` as a Bulk Data export; ``groups`` maps a Group id to its patients' ids."""

    resources: list[dict[str, Any]]
    groups: dict[str, list[str]] = field(default_factory=dict)
    client: RegisteredClient | None = None
    polls_before_complete: int = 2
    retry_after: str = "0"
    max_lines_per_file: int = 1000
    requires_access_token: bool = True
    fail_next_status_with: list[int] = field(default_factory=list)  # statuses answered before the real one
    fail_downloads: Counter[str] = field(default_factory=Counter)  # file name -> 503s to answer first
    fail_jobs_with: str | None = None  # an issue code: every job fails at its first status poll
    # what the server saw
    kickoffs: list[dict[str, list[str]]] = field(default_factory=list)
    jobs: dict[str, ExportJob] = field(default_factory=dict)
    downloads: Counter[str] = field(default_factory=Counter)
    download_auth: list[bool] = field(default_factory=list)
    token_requests: int = 0
    used_jti: set[str] = field(default_factory=set)
    tokens: dict[str, float] = field(default_factory=dict)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> BulkDataServer:
        handler = type("Handler", (_Handler,), {"bulk": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="bulk-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def origin(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.origin}/auth/token"

    # ---------------------------------------------------------------- token endpoint
    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_assertion_type") != ASSERTION_TYPE or self.client is None:
            return 400, {"error": "invalid_client"}
        assertion = form.get("client_assertion", "")
        try:
            algorithm = jwt.get_unverified_header(assertion).get("alg")
            if algorithm not in ("RS384", "ES384"):
                return 400, {"error": "invalid_client"}
            claims = jwt.decode(
                assertion,
                self.client.public_key_pem,
                algorithms=[algorithm],
                audience=self.token_url,
                issuer=self.client.client_id,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.PyJWTError:
            return 400, {"error": "invalid_client"}
        if claims["sub"] != self.client.client_id or claims["exp"] - time.time() > MAX_ASSERTION_LIFETIME + 5:
            return 400, {"error": "invalid_client"}
        with self._lock:
            if claims["jti"] in self.used_jti:
                return 400, {"error": "invalid_client"}
            self.used_jti.add(claims["jti"])
        scopes = set(form.get("scope", "").split())
        if not scopes or not scopes <= self.client.scopes:
            return 400, {"error": "invalid_scope"}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = time.time() + TOKEN_LIFETIME
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": " ".join(sorted(scopes)),
        }

    def token_valid(self, authorization: str | None) -> bool:
        if self.client is None:
            return True
        if not authorization or not authorization.startswith("Bearer "):
            return False
        return self.tokens.get(authorization.removeprefix("Bearer "), 0) > time.time()

    # ---------------------------------------------------------------- export
    def kick_off(
        self, path: str, query: dict[str, list[str]], url: str, prefer: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        self.kickoffs.append(query)
        if prefer != "respond-async":
            return 400, {}, outcome("invalid", "Prefer: respond-async is required")
        output_format = query.get("_outputFormat", ["application/fhir+ndjson"])[0]
        if output_format not in NDJSON_FORMATS:
            return 400, {}, outcome("not-supported", f"format {output_format}")
        selected = self._select(path)
        if selected is None:
            return 404, {}, outcome("not-found", "no such group")
        if "_type" in query:
            wanted = {t for value in query["_type"] for t in value.split(",")}
            selected = [r for r in selected if r["resourceType"] in wanted]
        if "_since" in query:
            try:
                since = datetime.fromisoformat(query["_since"][0].replace("Z", "+00:00"))
            except ValueError:
                return 400, {}, outcome("invalid", "bad _since")
            selected = [r for r in selected if _last_updated(r) > since]
        job_id = secrets.token_hex(6)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in selected:
            by_type.setdefault(resource["resourceType"], []).append(resource)
        files = {}
        for resource_type, items in sorted(by_type.items()):
            for start in range(0, len(items), self.max_lines_per_file):
                chunk = items[start : start + self.max_lines_per_file]
                name = f"{resource_type}-{start // self.max_lines_per_file}.ndjson"
                files[name] = (resource_type, b"".join(orjson.dumps(r) + b"\n" for r in chunk), len(chunk))
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        job = ExportJob(job_id, url, files, now, fail_code=self.fail_jobs_with)
        self.jobs[job_id] = job
        return 202, {"Content-Location": f"{self.base_url}/bulkstatus/{job_id}"}, None

    def _select(self, path: str) -> list[dict[str, Any]] | None:
        if path == "/fhir/$export":
            return list(self.resources)
        if path == "/fhir/Patient/$export":
            return [r for r in self.resources if r["resourceType"] == "Patient" or _patient_of(r)]
        group_id = path.removeprefix("/fhir/Group/").removesuffix("/$export")
        if group_id not in self.groups:
            return None
        members = set(self.groups[group_id])
        return [
            r
            for r in self.resources
            if (r["resourceType"] == "Patient" and r["id"] in members) or _patient_of(r) in members
        ]

    def status(self, job_id: str) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        job = self.jobs.get(job_id)
        if job is None or job.deleted:
            return 404, {}, outcome("not-found", "no such job")
        if self.fail_next_status_with:
            failure = self.fail_next_status_with.pop(0)
            return failure, {"Retry-After": "0"}, None
        if job.fail_code:
            return 500, {}, outcome(job.fail_code, "export of Patient Jane Doe MRN 0048213 failed")
        job.polls += 1
        if job.polls <= self.polls_before_complete:
            percent = int(100 * job.polls / (self.polls_before_complete + 1))
            return 202, {"X-Progress": f"{percent}% complete", "Retry-After": self.retry_after}, None
        manifest = {
            "transactionTime": job.transaction_time,
            "request": job.request,
            "requiresAccessToken": self.requires_access_token,
            "output": [
                {"type": rtype, "url": f"{self.base_url}/bulkfiles/{job_id}/{name}", "count": count}
                for name, (rtype, _, count) in job.files.items()
            ],
            "error": [],
        }
        return 200, {}, manifest

    def file(self, job_id: str, name: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        self.download_auth.append(authorization is not None)
        job = self.jobs.get(job_id)
        if job is None or name not in job.files:
            return 404, {}, orjson.dumps(outcome("not-found", "no such file"))
        if self.requires_access_token and not self.token_valid(authorization):
            return 401, {}, orjson.dumps(outcome("login", "token required"))
        if self.fail_downloads[name] > 0:
            self.fail_downloads[name] -= 1
            return 503, {"Retry-After": "0"}, b""
        self.downloads[name] += 1
        return 200, {"Content-Type": "application/fhir+ndjson"}, job.files[name][1]


def outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def _last_updated(resource: dict[str, Any]) -> datetime:
    text = resource.get("meta", {}).get("lastUpdated", "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _patient_of(resource: dict[str, Any]) -> str | None:
    for name in ("subject", "patient"):
        reference = resource.get(name, {}).get("reference", "")
        if reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


class _Handler(BaseHTTPRequestHandler):
    bulk: BulkDataServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _send(self, status: int, headers: dict[str, str], body: bytes | dict[str, Any] | None) -> None:
        payload = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else b"")
        self.send_response(status)
        if isinstance(body, dict):
            self.send_header("Content-Type", "application/fhir+json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.path == "/auth/token":
            status, body = self.bulk.issue_token(form)
            self._send(status, {"Cache-Control": "no-store"}, body)
        else:
            self._send(404, {}, outcome("not-found", "no such endpoint"))

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        authorization = self.headers.get("Authorization")
        if path.startswith("/fhir/bulkfiles/"):
            job_id, _, name = path.removeprefix("/fhir/bulkfiles/").partition("/")
            self._send(*self.bulk.file(job_id, name, authorization))
            return
        if not self.bulk.token_valid(authorization):
            self._send(401, {}, outcome("login", "token required"))
            return
        if path.endswith("/$export"):
            self._send(*self.bulk.kick_off(path, query, f"{self.bulk.origin}{self.path}", self.headers.get("Prefer")))
        elif path.startswith("/fhir/bulkstatus/"):
            self._send(*self.bulk.status(path.removeprefix("/fhir/bulkstatus/")))
        else:
            self._send(404, {}, outcome("not-found", "no such endpoint"))

    def do_DELETE(self) -> None:  # noqa: N802
        job = self.bulk.jobs.get(urlsplit(self.path).path.removeprefix("/fhir/bulkstatus/"))
        if job is None or not self.bulk.token_valid(self.headers.get("Authorization")):
            self._send(404, {}, outcome("not-found", "no such job"))
            return
        job.deleted = True
        self._send(202, {}, None)
