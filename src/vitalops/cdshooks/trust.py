"""Trusting CDS clients (CDS Hooks 2.0.1): verify the EHR's signed JWT on every call, discovery included.

The checks, in order, each refused as Unauthenticated with ``details.check`` naming it:

``malformed``  not a compact JWS with a JSON header and payload
``alg``        the header's ``alg`` is not ES384 or RS384 (``none`` and every HMAC are refused)
``typ``        the header's ``typ`` is not ``JWT``
``iss``        the issuer is not a trusted client (``vitalops ehr add``), or it was revoked
``jku``        the header names a ``jku`` that is not on that issuer's allow-list (never fetched)
``kid``        no key with the header's ``kid`` in the issuer's JWK Set
``signature``  the signature does not verify with that key
``aud``        ``aud`` (string or list) does not contain the exact URL called
``exp``        missing, expired (beyond the leeway), or a lifetime (``exp - iat``) over MAX_LIFETIME
``iat``        missing, or issued in the future (beyond the leeway)
``jti``        missing, or used before by this issuer while still alive (a replay)

The leeway for clock skew is LEEWAY_S seconds on ``exp`` and ``iat``. A ``jti`` is kept until its
token expires (plus the leeway) in the database, so a replay is refused by every worker; a token
lives at most MAX_LIFETIME_S, which bounds that table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from jwt import PyJWK
from sqlalchemy import delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vitalops.auth import Principal, Role
from vitalops.cdshooks.clients import ALGORITHMS, EhrClient, check_jwks, get_client
from vitalops.core.clock import utcnow
from vitalops.db import Database
from vitalops.db.tables.cdshooks import JwtIdRow
from vitalops.errors import InvalidInput, NotFound, Unauthenticated

LEEWAY_S = 30
MAX_LIFETIME_S = 600
CLIENT_TTL_S = 5.0
JKU_TTL_S = 300.0
JKU_TIMEOUT_S = 2.0

#: Writes a JWT id unless seen before; True when it was new. (Through the serving group writer, or a session.)
JtiRecorder = Callable[[str, str, datetime], bool]


def refused(check: str, message: str) -> Unauthenticated:
    return Unauthenticated(f"CDS Hooks JWT refused ({check}): {message}", details={"reason": f"jwt.{check}",
                                                                                 "check": check})


@dataclass(frozen=True)
class VerifiedCall:
    """Who called: the trusted client and the principal of its ``ehr`` account."""

    client: EhrClient
    principal: Principal
    claims: dict[str, Any]


def _insert_ignore(session: Session, issuer: str, jti: str, expires_at: datetime) -> bool:
    values = {"issuer": issuer, "jti": jti, "expires_at": expires_at}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(JwtIdRow).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(JwtIdRow).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the two supported databases are above
        statement = insert(JwtIdRow).values(**values)
    # RETURNING gives a row only when one was inserted (rowcount is not reliable for ORM inserts)
    return session.execute(statement.returning(JwtIdRow.jti)).first() is not None


def record_jti(session: Session, issuer: str, jti: str, expires_at: datetime, *, purge: bool = True) -> bool:
    """Remember ``jti`` of ``issuer`` until ``expires_at``; False when it is already remembered (a replay).
    With ``purge``, forgets the ids of tokens that have expired."""
    if purge:
        session.execute(delete(JwtIdRow).where(JwtIdRow.expires_at < utcnow()))
    return _insert_ignore(session, issuer, jti, expires_at)


class Verifier:
    """Verifies CDS Hooks JWTs against the trusted clients in the database (cached for a few seconds)."""

    def __init__(self, database: Database, *, http: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.http = http
        self.clock = clock
        self._clients: dict[str, tuple[float, EhrClient | None, Principal | None]] = {}
        self._jku: dict[str, tuple[float, dict[str, Any]]] = {}
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _client(self, issuer: str) -> tuple[EhrClient, Principal]:
        now = time.monotonic()
        cached = self._clients.get(issuer)
        if cached is None or now - cached[0] > CLIENT_TTL_S:
            try:
                with self.database.read_session() as session:
                    client, user = get_client(session, issuer)
                principal: Principal | None = None
                if not client.revoked and user.disabled_at is None:
                    principal = Principal(name=user.name, roles=frozenset({Role(user.role)}), user_id=user.id,
                                          kind="ehr", credential="jwt", attributes={"site": client.site})
                cached = (now, client, principal)
            except NotFound:
                cached = (now, None, None)
            self._clients[issuer] = cached
        _, found, principal = cached
        if found is None or principal is None:
            raise refused("iss", "the issuer is not a trusted EHR client")
        return found, principal

    def _key_set(self, client: EhrClient, jku: str | None) -> dict[str, Any]:
        if jku is None:
            if client.jwks is None:
                raise refused("jku", "this issuer publishes its keys by jku, and the token names none")
            return client.jwks
        if jku not in client.jku_allow:
            raise refused("jku", "the jku is not on this issuer's allow-list; it was not fetched")
        now = time.monotonic()
        cached = self._jku.get(jku)
        if cached is not None and now - cached[0] < JKU_TTL_S:
            return cached[1]
        http = self.http or httpx.Client(timeout=JKU_TIMEOUT_S, follow_redirects=False)
        try:
            response = http.get(jku, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = check_jwks(response.json())
        except (httpx.HTTPError, ValueError, InvalidInput):
            raise refused("jku", "the issuer's allow-listed JWK Set could not be fetched") from None
        finally:
            if self.http is None:
                http.close()
        self._jku[jku] = (now, keys)
        return keys

    def verify(self, token: str, audience: str, record: JtiRecorder) -> VerifiedCall:
        """The verified call of ``token`` presented to ``audience`` (the exact URL called); Unauthenticated
        naming the failed check otherwise. ``record`` remembers the token's ``jti`` (see ``record_jti``)."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise refused("malformed", "the bearer token is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise refused("alg", "only ES384 and RS384 are accepted")
        if header.get("typ") != "JWT":
            raise refused("typ", "the header's typ must be 'JWT'")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str):
            raise refused("iss", "the token names no issuer")
        client, principal = self._client(issuer)
        jku = header.get("jku")
        keys = self._key_set(client, jku if isinstance(jku, str) else None)
        kid = header.get("kid")
        match = next((key for key in keys["keys"] if isinstance(kid, str) and key.get("kid") == kid), None)
        if match is None:
            raise refused("kid", "no key of this issuer has the token's kid")
        try:
            key = PyJWK(match, algorithm=alg)
        except jwt.PyJWTError:
            raise refused("kid", "the issuer's key of that kid does not fit the token's alg") from None
        claims = self._decode(token, key, alg, audience, issuer)
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > MAX_LIFETIME_S:
            raise refused("exp", f"the token lives {lifetime:.0f} s; at most {MAX_LIFETIME_S} s are accepted")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise refused("jti", "jti must be a non-empty string of at most 256 characters")
        self._remember(issuer, jti, float(claims["exp"]), record)
        return VerifiedCall(client, principal, claims)

    def _decode(self, token: str, key: PyJWK, alg: str, audience: str, issuer: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=audience, issuer=issuer, leeway=LEEWAY_S,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_iat": True},
            )
        except jwt.InvalidSignatureError:
            raise refused("signature", "the signature does not verify with the issuer's key") from None
        except jwt.ExpiredSignatureError:
            raise refused("exp", "the token has expired") from None
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            raise refused("iat", "the token is issued in the future") from None
        except jwt.InvalidAudienceError:
            raise refused("aud", "aud is not the URL called") from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in ("aud", "exp", "iat", "jti") else "malformed"
            raise refused(claim, f"the token has no '{exc.claim}' claim") from None
        except jwt.PyJWTError:
            raise refused("malformed", "the token could not be verified") from None
        now = self.clock()
        if claims["iat"] > now + LEEWAY_S:
            raise refused("iat", "the token is issued in the future")
        return claims

    def _remember(self, issuer: str, jti: str, exp: float, record: JtiRecorder) -> None:
        now = self.clock()
        with self._lock:
            if (issuer, jti) in self._seen:
                raise refused("jti", "this jti was used before (a replay)")
            self._seen[(issuer, jti)] = exp + LEEWAY_S
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
        expires_at = datetime.fromtimestamp(exp + LEEWAY_S, tz=UTC)
        if not record(issuer, jti, expires_at):
            raise refused("jti", "this jti was used before (a replay)")
