"""VitalOps: clinical AI operations, from FHIR in to governed predictions out.

The Python SDK is the names below; everything else is internal and may change. The command line
(``vitalops``) and the HTTP API (``vitalops serve``) are built on the same services.
"""

__version__ = "0.1.0"

from vitalops.core import memory as _memory  # noqa: E402

_memory.use_platform_memory_pool()

from vitalops.artifacts import load_predictor  # noqa: E402 - the version comes first: modules read it
from vitalops.audit import append as append_audit_event  # noqa: E402
from vitalops.audit import verify_chain  # noqa: E402
from vitalops.auth import Permission, Principal, Role  # noqa: E402
from vitalops.db import Database  # noqa: E402
from vitalops.errors import (  # noqa: E402
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
from vitalops.features import (  # noqa: E402
    build_training_set,
    features_from_resources,
    features_from_store,
    load_spec,
    read_training_set,
    write_training_set,
)
from vitalops.governance.approvals import approve_version, reject_version  # noqa: E402
from vitalops.governance.deploy import deploy_version, rollback_deployment  # noqa: E402
from vitalops.governance.gate import run_pccp_check  # noqa: E402
from vitalops.ingest.service import ingest_paths  # noqa: E402
from vitalops.quality.report import quality_report  # noqa: E402
from vitalops.synth import generate_hospital  # noqa: E402
from vitalops.terminology import load_terminology  # noqa: E402
from vitalops.training.trainer import train_from_spec  # noqa: E402
from vitalops.validation.report import build_report  # noqa: E402
from vitalops.validation.thresholds import ThresholdRule  # noqa: E402

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
