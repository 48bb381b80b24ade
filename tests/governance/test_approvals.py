from __future__ import annotations

import pytest

from vitalops.audit import list_events
from vitalops.auth import Principal, Role
from vitalops.errors import Conflict, PermissionDenied, PolicyViolation
from vitalops.governance.approvals import approve_version, list_approvals, reject_version
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import create_model, create_version, get_version, update_version_report

SCIENTIST = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
ALICE = Principal(name="alice", roles=frozenset({Role.APPROVER}), credential="key:alice", personal=True)
BOB = Principal(name="bob", roles=frozenset({Role.APPROVER}), credential="key:bob", personal=True)
SELF_APPROVER = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST, Role.APPROVER}), credential="key:dana",
                          personal=True)


@pytest.fixture
def validated(database):
    with database.session() as session:
        create_model(
            session,
            SCIENTIST,
            ModelCreate(
                name="sepsis",
                intended_use="sepsis alert",
                clinical_owner="ICU",
                target_population="adults",
                approvals_required=2,
            ),
        )
        create_version(
            session,
            SCIENTIST,
            "sepsis",
            VersionCreate(
                source="trained",
                state="validated",
                dataset_fingerprint="f" * 64,
                definitions_version="d1",
                code_version="0.1.0",
                estimator="logistic_regression",
                flavor="sklearn",
                signature=Signature.of(["lactate"]),
                artifact_sha256="a" * 64,
                threshold=0.2,
                report={"auroc": 0.81},
                report_hash="1" * 64,
            ),
        )
    return database


def test_two_person_rule_and_report_binding(validated):
    first = approve_version(validated, ALICE, "sepsis", 1, reason="report reviewed")
    assert (first.version.state, first.approvals_counted, first.approvals_required) == ("validated", 1, 2)
    with pytest.raises(Conflict):
        approve_version(validated, ALICE, "sepsis", 1, reason="again")
    second = approve_version(validated, BOB, "sepsis", 1, reason="subgroups acceptable")
    assert second.version.state == "approved"

    with validated.session() as session:
        changed = update_version_report(
            session,
            SCIENTIST,
            "sepsis",
            1,
            report={"auroc": 0.79},
            report_hash="2" * 64,
            threshold=0.2,
            reason="re-validated",
        )
        assert changed.state == "validated"
        assert [a.valid for a in list_approvals(session, "sepsis", 1)] == [False, False]
    again = approve_version(validated, ALICE, "sepsis", 1, reason="new report reviewed")
    assert again.approvals_counted == 1 and again.version.state == "validated"


def test_self_approval_is_refused_and_audited(validated):
    with pytest.raises(PolicyViolation):
        approve_version(validated, SELF_APPROVER, "sepsis", 1, reason="looks fine to me")
    with pytest.raises(PermissionDenied):
        approve_version(validated, SCIENTIST, "sepsis", 1, reason="no role")
    with validated.session() as session:
        actions = [e.action for e in list_events(session, object_id="sepsis/1")]
        assert "model.version.approve.denied" in actions
        assert list_approvals(session, "sepsis", 1) == []
        assert get_version(session, "sepsis", 1).state == "validated"


def test_reject_requires_reason_and_is_final(validated):
    from vitalops.errors import InvalidInput

    with pytest.raises(InvalidInput):
        reject_version(validated, ALICE, "sepsis", 1, reason="  ")
    assert reject_version(validated, ALICE, "sepsis", 1, reason="calibration off").state == "rejected"
    with pytest.raises(Conflict):
        approve_version(validated, BOB, "sepsis", 1, reason="too late")
