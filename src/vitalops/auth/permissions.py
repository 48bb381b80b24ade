"""The permission matrix: which role may do what. The single source of truth for the API,
the command line and the services.

Roles are those of docs/security.md. A principal may hold several roles; it is permitted an
action when any of its roles is.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    DATA_SCIENTIST = "data_scientist"
    APPROVER = "approver"
    OPERATOR = "operator"
    CLINICIAN = "clinician"
    AUDITOR = "auditor"
    EHR = "ehr"


class Permission(StrEnum):
    USERS_MANAGE = "users:manage"
    KEYS_MANAGE = "keys:manage"
    SETTINGS_MANAGE = "settings:manage"
    AUDIT_READ = "audit:read"
    DATA_INGEST = "data:ingest"
    DATA_DEID = "data:deid"
    QUALITY_READ = "quality:read"
    DATASETS_BUILD = "datasets:build"
    MODELS_READ = "models:read"
    MODELS_TRAIN = "models:train"
    MODELS_REGISTER = "models:register"
    MODELS_APPROVE = "models:approve"
    PCCP_MANAGE = "pccp:manage"
    PCCP_CHECK = "pccp:check"
    PCCP_APPROVE = "pccp:approve"
    PCCP_REVIEW = "pccp:review"
    DEPLOY_SHADOW = "deploy:shadow"
    DEPLOY_PROMOTE = "deploy:promote"
    DEPLOY_ROLLBACK = "deploy:rollback"
    MONITORING_READ = "monitoring:read"
    MONITORING_RUN = "monitoring:run"
    ALERTS_READ = "alerts:read"
    ALERTS_MANAGE = "alerts:manage"
    PREDICT = "predict"
    REVIEW_DECIDE = "review:decide"
    FEEDBACK_WRITE = "feedback:write"
    CDS_HOOKS_CALL = "cdshooks:call"
    CODEBOOK_READ = "codebook:read"


_P = Permission
MATRIX: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({_P.USERS_MANAGE, _P.KEYS_MANAGE, _P.SETTINGS_MANAGE, _P.MODELS_READ, _P.QUALITY_READ}),
    Role.DATA_SCIENTIST: frozenset(
        {
            _P.DATA_INGEST, _P.DATA_DEID, _P.QUALITY_READ, _P.DATASETS_BUILD, _P.MODELS_READ, _P.MODELS_TRAIN,
            _P.MODELS_REGISTER, _P.PCCP_MANAGE, _P.PCCP_CHECK, _P.DEPLOY_SHADOW, _P.MONITORING_READ,
            _P.ALERTS_READ,
        }
    ),
    Role.APPROVER: frozenset(
        {
            _P.MODELS_READ, _P.MODELS_APPROVE, _P.PCCP_CHECK, _P.PCCP_APPROVE, _P.PCCP_REVIEW, _P.PCCP_MANAGE,
            _P.DEPLOY_SHADOW, _P.DEPLOY_PROMOTE, _P.QUALITY_READ, _P.MONITORING_READ, _P.AUDIT_READ, _P.ALERTS_READ,
        }
    ),
    Role.OPERATOR: frozenset(
        {
            _P.DATA_INGEST, _P.QUALITY_READ, _P.MODELS_READ, _P.DEPLOY_SHADOW, _P.DEPLOY_ROLLBACK,
            _P.MONITORING_READ, _P.MONITORING_RUN, _P.ALERTS_READ, _P.ALERTS_MANAGE,
        }
    ),
    Role.CLINICIAN: frozenset({_P.PREDICT, _P.REVIEW_DECIDE, _P.FEEDBACK_WRITE, _P.MODELS_READ}),
    Role.AUDITOR: frozenset({_P.AUDIT_READ, _P.MODELS_READ, _P.QUALITY_READ, _P.MONITORING_READ, _P.ALERTS_READ}),
    Role.EHR: frozenset({_P.CDS_HOOKS_CALL, _P.FEEDBACK_WRITE}),
}


def is_permitted(roles: frozenset[Role], permission: Permission) -> bool:
    """True when any of ``roles`` grants ``permission``."""
    return any(permission in MATRIX[role] for role in roles)
