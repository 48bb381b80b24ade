"""VitalOps: clinical AI operations, from FHIR in to governed predictions out.

The Python SDK is the names below; everything else is internal and may change. The command line
(``vitalops``) and the HTTP API (``vitalops serve``) are built on the same services.

The names load on first use (a module-level ``__getattr__``), so that importing ``vitalops``,
or any part of it such as the command line, does not pay for pyarrow, pandas, scipy or alembic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module it lives in.
_EXPORTS: dict[str, tuple[str, str]] = {
    "CheckFailed": ("vitalops.errors", "CheckFailed"),
    "ConfigError": ("vitalops.errors", "ConfigError"),
    "Conflict": ("vitalops.errors", "Conflict"),
    "Database": ("vitalops.db", "Database"),
    "GateFailed": ("vitalops.errors", "GateFailed"),
    "IntegrityError": ("vitalops.errors", "IntegrityError"),
    "InvalidInput": ("vitalops.errors", "InvalidInput"),
    "NotFound": ("vitalops.errors", "NotFound"),
    "Permission": ("vitalops.auth", "Permission"),
    "PermissionDenied": ("vitalops.errors", "PermissionDenied"),
    "PolicyViolation": ("vitalops.errors", "PolicyViolation"),
    "Principal": ("vitalops.auth", "Principal"),
    "Role": ("vitalops.auth", "Role"),
    "ServiceUnavailable": ("vitalops.errors", "ServiceUnavailable"),
    "ThresholdRule": ("vitalops.validation.thresholds", "ThresholdRule"),
    "Unauthenticated": ("vitalops.errors", "Unauthenticated"),
    "VitalOpsError": ("vitalops.errors", "VitalOpsError"),
    "append_audit_event": ("vitalops.audit", "append"),
    "approve_version": ("vitalops.governance.approvals", "approve_version"),
    "build_report": ("vitalops.validation.report", "build_report"),
    "build_training_set": ("vitalops.features", "build_training_set"),
    "deploy_version": ("vitalops.governance.deploy", "deploy_version"),
    "features_from_resources": ("vitalops.features", "features_from_resources"),
    "features_from_store": ("vitalops.features", "features_from_store"),
    "generate_hospital": ("vitalops.synth", "generate_hospital"),
    "ingest_paths": ("vitalops.ingest.service", "ingest_paths"),
    "load_predictor": ("vitalops.artifacts", "load_predictor"),
    "load_spec": ("vitalops.features", "load_spec"),
    "load_terminology": ("vitalops.terminology", "load_terminology"),
    "quality_report": ("vitalops.quality.report", "quality_report"),
    "read_training_set": ("vitalops.features", "read_training_set"),
    "reject_version": ("vitalops.governance.approvals", "reject_version"),
    "rollback_deployment": ("vitalops.governance.deploy", "rollback_deployment"),
    "run_pccp_check": ("vitalops.governance.gate", "run_pccp_check"),
    "train_from_spec": ("vitalops.training.trainer", "train_from_spec"),
    "verify_chain": ("vitalops.audit", "verify_chain"),
    "write_training_set": ("vitalops.features", "write_training_set"),
}

__all__ = [
    "CheckFailed",
    "ConfigError",
    "Conflict",
    "Database",
    "GateFailed",
    "IntegrityError",
    "InvalidInput",
    "NotFound",
    "Permission",
    "PermissionDenied",
    "PolicyViolation",
    "Principal",
    "Role",
    "ServiceUnavailable",
    "ThresholdRule",
    "Unauthenticated",
    "VitalOpsError",
    "__version__",
    "append_audit_event",
    "approve_version",
    "build_report",
    "build_training_set",
    "deploy_version",
    "features_from_resources",
    "features_from_store",
    "generate_hospital",
    "ingest_paths",
    "load_predictor",
    "load_spec",
    "load_terminology",
    "quality_report",
    "read_training_set",
    "reject_version",
    "rollback_deployment",
    "run_pccp_check",
    "train_from_spec",
    "verify_chain",
    "write_training_set",
]

_memory_pool_set = False


def __getattr__(name: str) -> Any:
    global _memory_pool_set
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'vitalops' has no attribute {name!r}")
    if not _memory_pool_set:  # the SDK works on Arrow buffers: its pool first (core.memory)
        import_module("vitalops.core.memory").use_platform_memory_pool()
        _memory_pool_set = True
    value = getattr(import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from vitalops.artifacts import load_predictor
    from vitalops.audit import append as append_audit_event
    from vitalops.audit import verify_chain
    from vitalops.auth import Permission, Principal, Role
    from vitalops.db import Database
    from vitalops.errors import (
        CheckFailed,
        ConfigError,
        Conflict,
        GateFailed,
        IntegrityError,
        InvalidInput,
        NotFound,
        PermissionDenied,
        PolicyViolation,
        ServiceUnavailable,
        Unauthenticated,
        VitalOpsError,
    )
    from vitalops.features import (
        build_training_set,
        features_from_resources,
        features_from_store,
        load_spec,
        read_training_set,
        write_training_set,
    )
    from vitalops.governance.approvals import approve_version, reject_version
    from vitalops.governance.deploy import deploy_version, rollback_deployment
    from vitalops.governance.gate import run_pccp_check
    from vitalops.ingest.service import ingest_paths
    from vitalops.quality.report import quality_report
    from vitalops.synth import generate_hospital
    from vitalops.terminology import load_terminology
    from vitalops.training.trainer import train_from_spec
    from vitalops.validation.report import build_report
    from vitalops.validation.thresholds import ThresholdRule
