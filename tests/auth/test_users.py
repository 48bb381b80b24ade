from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from vitalops.audit import list_events
from vitalops.auth import MATRIX, SYSTEM, Permission, Role, authorize
from vitalops.auth.users import authenticate_key, create_key, create_user, revoke_key
from vitalops.core.clock import utcnow
from vitalops.db import Database
from vitalops.errors import Conflict, InvalidInput, PermissionDenied, Unauthenticated


def test_every_role_has_a_row_in_the_matrix_and_governance_is_separated() -> None:
    assert set(MATRIX) == set(Role)
    assert Permission.MODELS_APPROVE in MATRIX[Role.APPROVER]
    assert not any(Permission.MODELS_APPROVE in MATRIX[role] for role in Role if role is not Role.APPROVER)
    assert MATRIX[Role.EHR] == {Permission.CDS_HOOKS_CALL, Permission.FEEDBACK_WRITE}
    assert not SYSTEM.can(Permission.MODELS_APPROVE)


def test_unknown_role_and_duplicate_user_are_refused_and_nothing_is_written(database: Database) -> None:
    with pytest.raises(InvalidInput, match="unknown role 'superuser'"), database.session() as session:
        create_user(session, SYSTEM, "dana", "superuser")
    with database.session() as session:
        create_user(session, SYSTEM, "dana", "data_scientist")
    with pytest.raises(Conflict, match="already exists"), database.session() as session:
        create_user(session, SYSTEM, "dana", "approver")
    with database.session() as session:
        assert [e.action for e in list_events(session, newest_first=False)] == ["user.created"]


def test_keys_are_stored_only_as_hashes_and_authenticate(database: Database) -> None:
    with database.session() as session:
        create_user(session, SYSTEM, "casey", "clinician", service=True)
        key, plain = create_key(session, SYSTEM, "casey", days=5)
    with database.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT key_hash FROM api_keys")).scalar_one()
    secret = plain.removeprefix(f"vok_{key.prefix}_")
    assert len(secret) >= 40 and plain not in stored and secret not in stored
    with database.session() as session:
        principal = authenticate_key(session, plain)
    assert principal.name == "casey" and principal.roles == {Role.CLINICIAN}
    with pytest.raises(Unauthenticated, match="not valid"), database.session() as session:
        authenticate_key(session, plain[:-2] + "xx")


def test_revoked_and_expired_keys_do_not_authenticate(database: Database) -> None:
    with database.session() as session:
        create_user(session, SYSTEM, "olive", "operator", service=True)
        revoked, revoked_plain = create_key(session, SYSTEM, "olive")
        expired, expired_plain = create_key(session, SYSTEM, "olive", key_name="old")
        revoke_key(session, SYSTEM, revoked.prefix, "rotated")
    with database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE api_keys SET expires_at = :t WHERE prefix = :p"),
                           {"t": utcnow() - timedelta(minutes=1), "p": expired.prefix})
    with pytest.raises(Unauthenticated, match="revoked"), database.session() as session:
        authenticate_key(session, revoked_plain)
    with pytest.raises(Unauthenticated, match="expired"), database.session() as session:
        authenticate_key(session, expired_plain)


def test_a_denial_is_audited_even_though_the_request_fails(database: Database) -> None:
    with database.session() as session:
        clinician = create_user(session, SYSTEM, "casey", "clinician").principal()
    with pytest.raises(PermissionDenied, match="users:manage"):
        authorize(database, clinician, Permission.USERS_MANAGE, object_type="user", object_id="*")
    with database.session() as session:
        denial = list_events(session, action="access.denied")[0]
    assert denial.actor == "casey" and denial.payload["permission"] == "users:manage"
