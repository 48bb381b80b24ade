"""A CDS client written to CDS Hooks 2.0.1: signs its JWTs, and checks every response against the
specification's rules (discovery fields, card fields and enumerations, summary length,
selectionBehavior with suggestions, override reasons with displays)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

INDICATORS = {"info", "warning", "critical"}
SELECTION = {"at-most-one", "any"}
ACTION_TYPES = {"create", "update", "delete"}
LINK_TYPES = {"absolute", "smart"}


class EhrKeys:
    """An EHR's ES384 key pair and its public JWK Set."""

    def __init__(self, issuer: str = "https://ehr.test/", kid: str = "ehr-key-1") -> None:
        self.issuer, self.kid = issuer, kid
        self.private = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwks = {"keys": [public | {"kid": kid, "use": "sig", "alg": "ES384"}]}

    def token(self, aud: str, *, lifetime: int = 120, headers: dict[str, Any] | None = None,
              **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": aud, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        payload.update(claims)
        return jwt.encode(payload, self.private, algorithm="ES384",
                          headers={"kid": self.kid, "typ": "JWT", **(headers or {})})


def check_discovery(body: dict[str, Any]) -> None:
    assert set(body) >= {"services"} and isinstance(body["services"], list)
    for service in body["services"]:
        for name in ("hook", "id", "description"):
            assert isinstance(service[name], str) and service[name], name
        for key, template in service.get("prefetch", {}).items():
            assert isinstance(key, str)
            stripped = template.replace("{{context.patientId}}", "").replace("{{context.userId}}", "")
            assert "{{" not in stripped and "}}" not in stripped, template


def check_cards(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert isinstance(body.get("cards"), list)
    for card in body["cards"]:
        uuid.UUID(card["uuid"])
        assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
        assert card["indicator"] in INDICATORS
        assert isinstance(card["source"]["label"], str) and card["source"]["label"]
        if card.get("suggestions"):
            assert card["selectionBehavior"] in SELECTION
            for suggestion in card["suggestions"]:
                assert suggestion["label"]
                uuid.UUID(suggestion["uuid"])
                for action in suggestion.get("actions", []):
                    assert action["type"] in ACTION_TYPES and action["description"]
                    if action["type"] in ("create", "update"):
                        assert isinstance(action["resource"], dict)
        for reason in card.get("overrideReasons", []):
            assert reason["code"] and reason["system"] and reason["display"]
        for link in card.get("links", []):
            assert link["label"] and link["url"] and link["type"] in LINK_TYPES
    return body["cards"]


def feedback_item(card: dict[str, Any], outcome: str, *, when: str = "2026-12-01T10:00:00Z",
                  reason: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": when}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": s["uuid"]} for s in card.get("suggestions", [])]
    else:
        item["overrideReason"] = {"reason": card["overrideReasons"][reason], "userComment": "seen at the bedside"}
    return item
