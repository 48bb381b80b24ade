"""The tamper-evident audit trail: append in the caller's transaction, list, verify, export."""

from vitalops.audit.trail import AuditEvent, append, iter_events, list_events
from vitalops.audit.verify import ChainReport, verify_chain

__all__ = ["AuditEvent", "ChainReport", "append", "iter_events", "list_events", "verify_chain"]
