"""SMART Backend Services authorization: a signed JWT client assertion exchanged for an access token.

The client proves who it is with a short-lived JWT (``iss`` = ``sub`` = client id, ``aud`` = the
token URL, ``exp`` at most five minutes ahead, a unique ``jti``) signed with its registered private
key (RS384 or ES384), posted to the token endpoint with the ``client_credentials`` grant. The
access token is cached until shortly before it expires.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from vitalops.core.settings import Settings
from vitalops.errors import InvalidInput, ServiceUnavailable, Unauthenticated

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUPPORTED_ALGORITHMS = ("RS384", "ES384")
#: The assertion's lifetime; the specification allows at most five minutes.
ASSERTION_LIFETIME_SECONDS = 240
#: A cached token is renewed this long before the server says it expires.
TOKEN_RENEWAL_MARGIN_SECONDS = 30
DEFAULT_TOKEN_LIFETIME_SECONDS = 300


@dataclass
class BackendServicesAuth:
    """A registered backend client of an EHR's authorization server."""

    token_url: str
    client_id: str
    private_key_pem: bytes = field(repr=False)
    key_id: str | None = None
    scope: str = "system/*.read"
    algorithm: str = "RS384"
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            raise InvalidInput(f"SMART Backend Services signs with {' or '.join(SUPPORTED_ALGORITHMS)}")

    def client_assertion(self) -> str:
        """A freshly signed client assertion JWT with a new ``jti``."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "jti": secrets.token_urlsafe(24),
        }
        headers: dict[str, Any] = {"typ": "JWT"}
        if self.key_id:
            headers["kid"] = self.key_id
        try:
            return jwt.encode(claims, self.private_key_pem, algorithm=self.algorithm, headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise InvalidInput(f"the private key cannot sign {self.algorithm} assertions") from exc

    def access_token(self, http: httpx.Client) -> str:
        """A valid access token, from the cache or the token endpoint.

        Raises Unauthenticated when the server refuses the client (with its OAuth error code),
        ServiceUnavailable when the token endpoint cannot be reached or fails.
        """
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        try:
            response = http.post(self.token_url, data=form, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(f"token endpoint failed with HTTP {response.status_code}")
        body = _json_object(response)
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            error = body.get("error") if isinstance(body.get("error"), str) else "invalid_response"
            raise Unauthenticated(
                f"token endpoint refused client {self.client_id}: HTTP {response.status_code} {error}",
                details={"status": response.status_code, "error": error},
            )
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        self._token = body["access_token"]
        self._expires_at = time.monotonic() + max(0.0, float(lifetime) - TOKEN_RENEWAL_MARGIN_SECONDS)
        return self._token

    def invalidate(self) -> None:
        """Forget the cached token (after the resource server answered 401)."""
        self._token = None
        self._expires_at = 0.0


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def backend_auth(settings: Settings, *, token_url: str | None = None, client_id: str | None = None,
                 private_key: Path | None = None, key_id: str | None = None,
                 scope: str | None = None) -> BackendServicesAuth | None:
    """SMART Backend Services credentials from the arguments, else from ``VITALOPS_FHIR_*`` settings.

    None when no client id is configured (an open server); InvalidInput when they are incomplete.
    """
    client = client_id or settings.fhir_client_id
    if client is None:
        return None
    url = token_url or settings.fhir_token_url
    key_file = private_key or settings.fhir_private_key_file
    if url is None or key_file is None:
        raise InvalidInput("SMART Backend Services needs --token-url and --private-key (or VITALOPS_FHIR_TOKEN_URL "
                           "and VITALOPS_FHIR_PRIVATE_KEY_FILE) with the client id")
    try:
        pem = key_file.read_bytes()
    except OSError:
        raise InvalidInput(f"the private key file {key_file} cannot be read") from None
    return BackendServicesAuth(token_url=url, client_id=client, private_key_pem=pem,
                               key_id=key_id or settings.fhir_key_id, scope=scope or settings.fhir_scope)
