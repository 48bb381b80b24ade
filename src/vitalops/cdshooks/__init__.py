"""CDS Hooks 2.0.1: discovery, the ``patient-view`` services, cards, feedback, and trusting CDS clients."""

from vitalops.cdshooks.cards import build_card, card_uuid
from vitalops.cdshooks.clients import EhrClient, add_client, list_clients, revoke_client
from vitalops.cdshooks.service import CallResult, CdsHooks
from vitalops.cdshooks.trust import VerifiedCall, Verifier, record_jti

__all__ = ["CallResult", "CdsHooks", "EhrClient", "Verifier", "VerifiedCall", "add_client", "build_card",
           "card_uuid", "list_clients", "record_jti", "revoke_client"]
