"""The EHR's side of CDS Hooks: a client's credentials, its signed JWTs, a prefetch built from FHIR
files, and the HTTP calls, as an EHR makes them (CDS Hooks 2.0.1).

``vitalops demo`` trusts one such client (the demo EHR of the site ``north``) and writes its
credentials to ``$VITALOPS_HOME/demo/ehr-client.json`` (mode 0600): the issuer, the key id and the
private key as a JWK. ``vitalops cds call`` and the demo's replay call the services with it.

Replaying old data: ``replay_at`` keeps what the EHR knew at a past moment (each resource's newest
version last updated by then) and moves every time in it by the same amount so that the moment
becomes now, as if the EHR called at that moment. Instants and date-times move by the exact
difference; dates (a birth date) by whole days, so ages and intervals are kept.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from vitalops.cdshooks.clients import ALGORITHMS
from vitalops.cdshooks.prefetch import matches, owned_by
from vitalops.errors import (
    BadRequest,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ServiceUnavailable,
    Unauthenticated,
    VitalOpsError,
)
from vitalops.fhir.readers import is_plain_ndjson, iter_resources, records_of_line, source_files

#: Where ``vitalops demo`` writes the demo EHR's credentials, under the home folder.
DEMO_CLIENT_FILE = Path("demo") / "ehr-client.json"
#: A JWT lives this long: long enough for one call, far under the server's limit.
TOKEN_LIFETIME_S = 60
CALL_TIMEOUT_S = 30.0
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Plain NDJSON is searched this many bytes at a time for the lines naming the patients asked for.
SCAN_BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class EhrCredentials:
    """A CDS client's identity: the JWT issuer, its signing key (a private JWK) and key id."""

    issuer: str
    kid: str
    private_jwk: dict[str, Any]
    alg: str = "ES384"
    site: str | None = None

    @classmethod
    def generate(cls, issuer: str, kid: str, *, site: str | None = None) -> EhrCredentials:
        """A fresh ES384 (P-384) key pair for ``issuer``."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        private = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private))
        return cls(issuer, kid, jwk | {"kid": kid, "alg": "ES384", "use": "sig"}, "ES384", site)

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set the platform verifies this client's tokens with (no private part)."""
        private_parts = {"d", "p", "q", "dp", "dq", "qi", "oth"}
        return {"keys": [{k: v for k, v in self.private_jwk.items() if k not in private_parts}]}

    def token(self, audience: str, *, lifetime: int = TOKEN_LIFETIME_S) -> str:
        """A signed JWT for one call to ``audience`` (the exact URL called), with a fresh ``jti``."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        key = jwt.PyJWK(self.private_jwk, algorithm=self.alg)
        return jwt.encode(claims, key.key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})

    def to_dict(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "kid": self.kid, "alg": self.alg, "site": self.site,
                "private_jwk": self.private_jwk}

    def write(self, path: Path) -> None:
        """Write the credentials to ``path`` readable by its owner only (0600), replacing any file there."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))
        os.chmod(partial, 0o600)  # the umask may have kept bits off, never on; say it exactly
        partial.replace(path)

    @classmethod
    def read(cls, path: Path) -> EhrCredentials:
        """The credentials in ``path``; InvalidInput when it is missing or not a client file."""
        try:
            document = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise InvalidInput(f"no EHR client file at {path}; run 'vitalops demo' first or give --client",
                               details={"field": "client"}) from None
        except (OSError, orjson.JSONDecodeError):
            raise InvalidInput(f"{path} is not a readable EHR client file (JSON)",
                               details={"field": "client"}) from None
        try:
            credentials = cls(str(document["issuer"]), str(document["kid"]), dict(document["private_jwk"]),
                              str(document.get("alg", "ES384")), document.get("site"))
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"{path} needs 'issuer', 'kid' and 'private_jwk'", details={"field": "client"}) from None
        if credentials.alg not in ALGORITHMS or "d" not in credentials.private_jwk:
            raise InvalidInput(f"{path}: the key must be a private ES384 or RS384 JWK", details={"field": "client"})
        return credentials


# --- FHIR files --------------------------------------------------------------------------------


def patient_resources(folder: Path, patient_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The resources of each patient in ``patient_ids`` among the FHIR files under ``folder`` (NDJSON,
    Bundles, single resources; plain NDJSON lines that name none of them are skipped unparsed, and
    the lines that do are checked to belong to them once parsed).
    Unreadable lines are left out. InvalidInput when ``folder`` does not exist."""
    wanted = set(patient_ids)
    found: dict[str, list[dict[str, Any]]] = {patient: [] for patient in wanted}
    encoded = {patient.encode() for patient in wanted if patient}
    try:
        files = source_files(folder)
    except FileNotFoundError:
        raise InvalidInput(f"no FHIR files at {folder}", details={"field": "fhir"}) from None

    def keep(resource: dict[str, Any] | None) -> None:
        if resource is None:
            return
        for patient in _patients_named(resource, wanted):
            found[patient].append(resource)

    if not wanted:
        return found
    alternatives = b"|".join(re.escape(patient) for patient in sorted(encoded))
    naming = re.compile(rb'"Patient/(?:' + alternatives + rb')"|"id"\s*:\s*"(?:' + alternatives + rb')"')
    for file in files:
        if not is_plain_ndjson(file):
            for record in iter_resources(file):
                keep(record.resource)
            continue
        for line in _lines_matching(file, naming):
            for record in records_of_line(str(file), 0, line):
                keep(record.resource)
    return found


def _lines_matching(path: Path, pattern: re.Pattern[bytes]) -> Iterator[bytes]:
    """The lines of ``path`` in which ``pattern`` occurs, searched a block at a time (memory stays
    within a block and a line; a search over the block beats a Python loop over its lines)."""
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(SCAN_BLOCK_BYTES)
            data = carry + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            chunk, carry = data[:cut], data[cut:]
            previous = -1
            for match in pattern.finditer(chunk):
                start = chunk.rfind(b"\n", 0, match.start()) + 1
                if start == previous:
                    continue
                previous = start
                end = chunk.find(b"\n", match.end())
                yield chunk[start:] if end == -1 else chunk[start:end]
            if not block:
                return


def _patients_named(resource: dict[str, Any], wanted: set[str]) -> list[str]:
    if resource.get("resourceType") == "Patient":
        return [resource["id"]] if resource.get("id") in wanted else []
    return [patient for patient in wanted if owned_by(resource, patient)]


def _known_at(resource: Mapping[str, Any]) -> str | None:
    meta = resource.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return updated if isinstance(updated, str) else resource.get("issued")


def _version(resource: Mapping[str, Any]) -> int:
    meta = resource.get("meta")
    try:
        return int(meta.get("versionId", 0)) if isinstance(meta, dict) else 0
    except (TypeError, ValueError):
        return 0


def _parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _shift(value: Any, delta: timedelta, days: int) -> Any:
    if isinstance(value, dict):
        return {key: _shift(item, delta, days) for key, item in value.items()}
    if isinstance(value, list):
        return [_shift(item, delta, days) for item in value]
    if isinstance(value, str):
        if _DATE_TIME.match(value):
            moved = _parse_instant(value) + delta
            return moved.isoformat().replace("+00:00", "Z") if value.endswith("Z") else moved.isoformat()
        if _DATE.match(value):
            return (datetime.fromisoformat(value) + timedelta(days=days)).date().isoformat()
    return value


def replay_at(resources: Iterable[dict[str, Any]], moment: datetime, now: datetime) -> list[dict[str, Any]]:
    """What an EHR knew at ``moment`` (each resource's newest version last updated by then; one with
    no ``meta.lastUpdated`` nor ``issued`` counts as known), with every time moved by ``now - moment``."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in resources:
        known = _known_at(resource)
        try:
            if known is not None and _parse_instant(known) > moment:
                continue
        except (ValueError, TypeError):  # not an instant with its offset: not knowable as of a moment
            continue
        key = (str(resource.get("resourceType")), str(resource.get("id")))
        if key not in newest or _version(resource) >= _version(newest[key]):
            newest[key] = resource
    delta = now - moment
    return [_shift(resource, delta, round(delta / timedelta(days=1))) for resource in newest.values()]


def build_prefetch(templates: Mapping[str, str], resources: list[dict[str, Any]],
                   context: Mapping[str, Any]) -> dict[str, Any]:
    """What the EHR sends for each prefetch template: the resource of a read (or null), a searchset
    Bundle of what a search finds."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        found = [resource for resource in resources if matches(template, resource, context)]
        if "?" not in template:
            prefetch[key] = found[0] if found else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                             "entry": [{"resource": resource} for resource in found]}
    return prefetch


def hook_request(patient_id: str, user_id: str, prefetch: dict[str, Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """A ``patient-view`` request for ``patient_id`` seen by ``user_id``."""
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": user_id, "patientId": patient_id}, **extra}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


# --- HTTP --------------------------------------------------------------------------------------

_STATUS_ERRORS: dict[int, type[VitalOpsError]] = {
    400: BadRequest, 401: Unauthenticated, 403: PermissionDenied, 404: NotFound, 412: PreconditionFailed,
    422: InvalidInput,
}


class CdsClient:
    """Calls a CDS service as the EHR of ``credentials``: every request signed for its exact URL."""

    def __init__(self, base_url: str, credentials: EhrCredentials, *, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self._http = http or httpx.Client(timeout=CALL_TIMEOUT_S)
        self._owned = http is None

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> CdsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, method: str, path: str, body: Any | None = None) -> Any:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self.credentials.token(url)}", "Accept": "application/json"}
        try:
            if body is None:
                response = self._http.request(method, url, headers=headers)
            else:
                response = self._http.request(method, url, headers=headers | {"Content-Type": "application/json"},
                                              content=orjson.dumps(body))
        except httpx.ConnectError:
            raise ServiceUnavailable(f"no VitalOps server answers at {self.base_url}; start it with "
                                     "'vitalops serve' (or 'vitalops demo'), or give --url") from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the call to {self.base_url} failed ({type(exc).__name__})") from None
        if response.status_code == 200:
            return response.json()
        try:
            problem = response.json()
            detail = str(problem.get("detail") or problem.get("title"))
            details = problem.get("details") or {}
        except (ValueError, AttributeError):
            detail, details = f"the server answered {response.status_code}", {}
        error = _STATUS_ERRORS.get(response.status_code, ServiceUnavailable)
        raise error(f"{response.status_code} from {path}: {detail}",
                    details={"status": response.status_code, **details})

    def discovery(self) -> dict[str, Any]:
        return dict(self._send("GET", "/cds-services"))

    def service(self, service_id: str) -> dict[str, Any]:
        """The discovery entry of ``service_id``; NotFound when the server does not list it."""
        for service in self.discovery().get("services", []):
            if service.get("id") == service_id:
                return dict(service)
        raise NotFound(f"the server lists no CDS service '{service_id}'", details={"field": "service"})

    def call(self, service_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._send("POST", f"/cds-services/{service_id}", body))

    def feedback(self, service_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._send("POST", f"/cds-services/{service_id}/feedback", {"feedback": items}))


def outcome_time(now: datetime | None = None) -> str:
    """A feedback ``outcomeTimestamp`` (UTC, seconds)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
