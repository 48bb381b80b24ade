"""The tamper-evident audit trail: append in the caller's transaction, list, verify against signed checkpoints."""

from vitalops.audit.trail import AuditEvent, append, iter_events, list_events
from vitalops.audit.verify import ChainReport, mark_keyed_chain, verify_chain

__all__ = ["AuditEvent", "ChainReport", "append", "iter_events", "list_events", "mark_keyed_chain", "verify_chain"]
