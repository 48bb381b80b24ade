"""The Python SDK surface is deliberate: adding or removing a public name is a visible change."""

from __future__ import annotations

import vitalops

EXPECTED = {
    "CheckFailed", "ConfigError", "Conflict", "Database", "GateFailed", "IntegrityError", "InvalidInput", "NotFound",
    "Permission", "PermissionDenied", "PolicyViolation", "Principal", "Role", "ServiceUnavailable", "ThresholdRule",
    "Unauthenticated", "VitalOpsError", "__version__", "append_audit_event", "approve_version", "build_report",
    "build_training_set", "deploy_version", "features_from_resources", "features_from_store", "generate_hospital",
    "ingest_paths", "load_predictor", "load_spec", "load_terminology", "quality_report", "read_training_set",
    "reject_version", "rollback_deployment", "run_pccp_check", "train_from_spec", "verify_chain",
    "write_training_set",
}


def test_exported_names_are_pinned_and_resolve() -> None:
    assert set(vitalops.__all__) == EXPECTED
    for name in vitalops.__all__:
        assert getattr(vitalops, name) is not None
    assert all(issubclass(getattr(vitalops, name), vitalops.VitalOpsError)
               for name in ("InvalidInput", "NotFound", "Conflict", "GateFailed", "IntegrityError"))
