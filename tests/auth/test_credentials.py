"""Two approvals mean two people: governance acts count only with a key its person created alone.

The adversaries: one admin who mints a key for each approver, a shell that sets VITALOPS_USER, a
service account's key, an enrollment token used twice or issued again behind a person's back.
"""

from __future__ import annotations

import pytest

from tests.conftest import bearer
from tests.governance.test_pccp_gate import _register, _table, create_deterioration_model
from vitalops.artifacts import open_store
from vitalops.audit import list_events, verify_chain
from vitalops.auth import SYSTEM
from vitalops.auth.users import create_enrollment, create_user, redeem_enrollment
from vitalops.errors import Conflict, Unauthenticated


@pytest.fixture
def candidate(database, settings):
    create_deterioration_model(database)
    _register(database, open_store(settings.artifacts_root), _table(1), ["heart_rate", "lactate"], 1)
    return database


def test_an_admin_cannot_mint_an_approvers_key_and_approve_as_them(api_client, candidate, make_user):
    _, admin_key = make_user("admin", "ada")
    with candidate.session() as session:
        create_user(session, SYSTEM, "blake", "approver")
    minted = api_client.post("/v1/users/blake/keys", json={"days": 7}, headers=bearer(admin_key))
    assert minted.status_code == 403 and minted.json()["code"] == "policy_violation"

    token = api_client.post("/v1/users/blake/enrollments", json={}, headers=bearer(admin_key)).json()["token"]
    redeemed = api_client.post("/v1/enrollments/redeem", json={"token": token})
    assert redeemed.status_code == 201 and redeemed.json()["personal"] is True
    blake_key = redeemed.json()["key"]
    assert api_client.post("/v1/enrollments/redeem", json={"token": token}).status_code == 401  # spent
    again = api_client.post("/v1/users/blake/enrollments", json={}, headers=bearer(admin_key))
    assert again.status_code == 409  # no second token behind blake's back while his key works

    approval = {"decision": "approve", "reason": "report reviewed"}
    approved = api_client.post("/v1/models/deterioration/versions/1/approvals", json=approval,
                               headers=bearer(blake_key))
    assert approved.status_code == 201
    prefix = redeemed.json()["prefix"]
    with candidate.session() as session:
        event = list_events(session, action="model.version.approve")[0]
    assert event.actor == "blake" and event.credential == f"key:{prefix}"
    assert verify_chain(candidate.engine).ok  # the credential is part of each event's hash

    own = api_client.post("/v1/me/keys", json={"name": "laptop"}, headers=bearer(blake_key))
    assert own.status_code == 201 and own.json()["personal"] is True


def test_a_service_accounts_key_never_counts_for_governance(api_client, candidate, make_user):
    _, admin_key = make_user("admin", "ada")
    api_client.post("/v1/users", json={"name": "robot", "role": "approver", "service": True},
                    headers=bearer(admin_key))
    robot_key = api_client.post("/v1/users/robot/keys", json={}, headers=bearer(admin_key)).json()["key"]
    refused = api_client.post("/v1/models/deterioration/versions/1/approvals",
                              json={"decision": "approve", "reason": "automated"}, headers=bearer(robot_key))
    assert refused.status_code == 403 and refused.json()["details"]["rule"] == "own_credential"
    with candidate.session() as session:
        denial = list_events(session, action="governance.credential_refused")[0]
    assert denial.actor == "robot" and denial.payload["act"] == "a version approve"


def test_the_command_line_needs_the_persons_own_key_for_governance(cli, candidate, make_user, monkeypatch):
    _, alex_key = make_user("approver", "alex")
    by_name = cli("models", "approve", "deterioration", "1", "--reason", "looks fine", user="alex")
    assert by_name.exit_code == 2 and "VITALOPS_API_KEY" in by_name.stderr
    with candidate.session() as session:
        assert list_events(session, action="governance.credential_refused")[0].credential == "cli:unverified"
    monkeypatch.setenv("VITALOPS_API_KEY", alex_key)
    by_key = cli("models", "approve", "deterioration", "1", "--reason", "looks fine", "--json")
    assert by_key.exit_code == 0, by_key.stderr
    mismatch = cli("models", "show", "deterioration", user="blake")
    assert mismatch.exit_code == 2 and "is the key of 'alex'" in mismatch.stderr


def test_an_enrollment_token_is_one_time_and_expires(database):
    with database.session() as session:
        create_user(session, SYSTEM, "casey", "clinician")
        _, token = create_enrollment(session, SYSTEM, "casey", hours=1)
    with database.session() as session:
        key, _ = redeem_enrollment(session, token)
    assert key.personal
    with pytest.raises(Unauthenticated, match="used already"), database.session() as session:
        redeem_enrollment(session, token)
    with pytest.raises(Conflict, match="holds a personal key"), database.session() as session:
        create_enrollment(session, SYSTEM, "casey")
    with pytest.raises(Unauthenticated, match="malformed"), database.session() as session:
        redeem_enrollment(session, "voe_nope")
