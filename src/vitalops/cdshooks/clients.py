"""Trusted EHR clients: the JWT issuers allowed to call the CDS services, managed by ``vitalops ehr``.

A client is an ``iss`` value, the public keys its JWTs are verified with (a JWK Set stored here, or
the exact ``jku`` URLs it may name, fetched from nowhere else), the FHIR server base URLs it may send
as ``fhirServer`` (when it names any, a call with another ``fhirServer`` is refused and nothing is
fetched; a client registered without a list may send any http(s) ``fhirServer``), the site whose
deployments score its patients (this is how a CDS call's site is known: by who signed it), and the
``ehr`` service account it acts as (created with it). Revoking a client refuses its tokens at once
on every worker (within the verifier's few seconds of cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Principal
from vitalops.auth.users import create_user
from vitalops.core.clock import utcnow
from vitalops.db.tables.cdshooks import EhrClientRow
from vitalops.db.tables.identity import UserRow
from vitalops.errors import Conflict, InvalidInput, NotFound
from vitalops.sites import get_site

#: Signature algorithms accepted on CDS Hooks JWTs (the specification recommends these two; never
#: ``none``, never a symmetric one).
ALGORITHMS = ("ES384", "RS384")
_KEY_TYPES = {"EC", "RSA"}


@dataclass(frozen=True)
class EhrClient:
    issuer: str
    site: str
    account: str
    jwks: dict[str, Any] | None
    jku_allow: tuple[str, ...]
    created_at: datetime
    revoked: bool
    fhir_servers: tuple[str, ...] | None = None  # None: no list registered, any http(s) fhirServer

    def allows_fhir_server(self, url: str) -> bool:
        """Whether this client may send ``url`` as ``fhirServer`` (compared without a trailing slash)."""
        return self.fhir_servers is None or normalize_fhir_server(url) in self.fhir_servers

    def to_dict(self) -> dict[str, object]:
        keys = [] if self.jwks is None else [key.get("kid") for key in self.jwks.get("keys", [])]
        return {"issuer": self.issuer, "site": self.site, "account": self.account, "key_ids": keys,
                "jku_allow": list(self.jku_allow),
                "fhir_servers": None if self.fhir_servers is None else list(self.fhir_servers),
                "created_at": self.created_at, "revoked": self.revoked}


def normalize_fhir_server(url: str) -> str:
    """A FHIR server base URL as it is stored and compared: without a trailing slash."""
    return url.rstrip("/")


def _to_client(row: EhrClientRow, account: str) -> EhrClient:
    servers = None if row.fhir_servers_json is None else tuple(orjson.loads(row.fhir_servers_json))
    return EhrClient(row.issuer, row.site, account, None if row.jwks_json is None else orjson.loads(row.jwks_json),
                     tuple(orjson.loads(row.jku_allow_json)), row.created_at, row.revoked_at is not None, servers)


def _check_url(url: str, field: str, what: str) -> None:
    if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
        raise InvalidInput(f"{what} '{url}' must be an https URL (or a loopback address for testing)",
                           details={"field": field})


def check_jwks(jwks: Any) -> dict[str, Any]:
    """A public JWK Set of EC or RSA keys, each with a unique ``kid`` and no private part; InvalidInput otherwise."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidInput("the JWK Set must be an object with a non-empty 'keys' list", details={"field": "jwks"})
    kids: set[str] = set()
    for position, key in enumerate(jwks["keys"]):
        field = f"jwks.keys[{position}]"
        if not isinstance(key, dict) or key.get("kty") not in _KEY_TYPES:
            raise InvalidInput(f"{field}: only EC and RSA public keys are accepted", details={"field": field})
        if "d" in key or "k" in key:
            raise InvalidInput(f"{field}: a private or symmetric key was given; give the public key only",
                               details={"field": field})
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid or kid in kids:
            raise InvalidInput(f"{field}: every key needs a unique 'kid'", details={"field": field})
        kids.add(kid)
    return {"keys": jwks["keys"]}


def add_client(
    session: Session, actor: Principal, issuer: str, *, site: str, jwks: dict[str, Any] | None = None,
    jku_allow: list[str] | None = None, account: str | None = None, fhir_servers: list[str] | None = None,
) -> EhrClient:
    """Trust ``issuer`` for ``site``, with a JWK Set and/or ``jku`` URLs, and the FHIR server base URLs
    it may send (``fhir_servers``; None or empty: any); creates its ``ehr`` service account
    (``account``, by default derived from the site). The caller checks that ``actor`` may
    manage settings. InvalidInput for a bad issuer, key set or URL, NotFound for an unknown site,
    Conflict when the issuer is trusted already."""
    if not issuer or len(issuer) > 512 or not issuer.startswith(("https://", "http://", "urn:")):
        raise InvalidInput("the issuer must be a URI (https://..., or urn:...) of at most 512 characters",
                           details={"field": "issuer"})
    allow = sorted(set(jku_allow or []))
    for url in allow:
        _check_url(url, "jku", "jku")
    servers = sorted({normalize_fhir_server(url) for url in fhir_servers or []})
    for url in servers:
        _check_url(url, "fhir_server", "FHIR server")
        if len(url) > 2048 or "?" in url or "#" in url or "@" in url:
            raise InvalidInput(f"FHIR server '{url[:80]}' must be a base URL (no query, fragment or user part)",
                               details={"field": "fhir_server"})
    if jwks is None and not allow:
        raise InvalidInput("give the issuer's JWK Set or at least one jku URL", details={"field": "jwks"})
    keys = None if jwks is None else check_jwks(jwks)
    get_site(session, site)
    if session.scalar(select(EhrClientRow.id).where(EhrClientRow.issuer == issuer)) is not None:
        raise Conflict(f"issuer '{issuer}' is trusted already; revoke it first to change its keys")
    name = account or f"ehr-{site}"
    user = session.scalar(select(UserRow).where(UserRow.name == name))
    if user is None:
        create_user(session, actor, name, "ehr", service=True)
        user = session.scalars(select(UserRow).where(UserRow.name == name)).one()
    elif user.role != "ehr":
        raise Conflict(f"user '{name}' exists and is not an ehr service account", details={"field": "account"})
    row = EhrClientRow(issuer=issuer, jwks_json=None if keys is None else orjson.dumps(keys).decode(),
                       jku_allow_json=orjson.dumps(allow).decode(),
                       fhir_servers_json=orjson.dumps(servers).decode() if servers else None, site=site,
                       user_id=user.id, created_at=utcnow(),
                       created_by=actor.name)
    session.add(row)
    session.flush()
    append(session, actor=actor, action="ehr.trusted", object_type="ehr_client", object_id=issuer,
           payload={"site": site, "account": name, "jku_allow": allow, "fhir_servers": servers,
                    "key_ids": [] if keys is None else [k["kid"] for k in keys["keys"]]})
    return _to_client(row, name)


def list_clients(session: Session) -> list[EhrClient]:
    rows = session.execute(select(EhrClientRow, UserRow.name).join(UserRow, UserRow.id == EhrClientRow.user_id)
                           .order_by(EhrClientRow.issuer))
    return [_to_client(row, name) for row, name in rows]


def get_client(session: Session, issuer: str) -> tuple[EhrClient, UserRow]:
    """The client trusted as ``issuer`` (revoked ones included) and its account; NotFound otherwise."""
    found = session.execute(select(EhrClientRow, UserRow).join(UserRow, UserRow.id == EhrClientRow.user_id)
                            .where(EhrClientRow.issuer == issuer)).first()
    if found is None:
        raise NotFound(f"issuer '{issuer}' is not a trusted EHR client")
    row, user = found
    return _to_client(row, user.name), user


def revoke_client(session: Session, actor: Principal, issuer: str, reason: str) -> EhrClient:
    """Stop trusting ``issuer`` (audited); revoking twice is a no-op."""
    row = session.scalar(select(EhrClientRow).where(EhrClientRow.issuer == issuer))
    if row is None:
        raise NotFound(f"issuer '{issuer}' is not a trusted EHR client")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        append(session, actor=actor, action="ehr.revoked", object_type="ehr_client", object_id=issuer,
               payload={"reason": reason})
    return get_client(session, issuer)[0]
