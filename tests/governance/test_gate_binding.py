"""The gate cannot be walked around: plans are governance's, checks hold only for what they judged.

Each test plays the adversary the rule exists for: the submitter who swaps the plan under the
gate, a threshold changed after the check, a champion that arrives after it, a site-scoped check
used elsewhere, a criterion nobody could evaluate, a review that waives too little.
"""

from __future__ import annotations

import pytest

from tests.governance.plans import ALICE, BOB, SCIENTIST, plan_in_force, register_sites
from tests.governance.test_pccp_gate import FEATURES, _register, _table, create_deterioration_model
from vitalops.artifacts import open_store
from vitalops.audit import list_events
from vitalops.auth import Principal, Role
from vitalops.db.tables.registry import ModelRow
from vitalops.errors import Conflict, GateFailed, InvalidInput, NotFound, PolicyViolation
from vitalops.governance.approvals import approve_version
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import gate_status, record_full_review, run_pccp_check
from vitalops.governance.pccp import decide_pccp, diff_pccp, get_pccp, propose_pccp
from vitalops.registry.versions import get_version_report, update_version_report
from vitalops.training.datasets import freeze_dataset

CAROL = Principal(name="carol", roles=frozenset({Role.APPROVER}), credential="key:carol", personal=True)


def _plan(uri: str, fingerprint: str, *, strict: bool = True, subgroup_min: int = 20) -> str:
    acceptance = "{auroc_low: 0.7}" if strict else "{}"
    drop = 0.02 if strict else 1.0
    locked = "[input_signature, intended_use, output_meaning]" if strict else "[]"
    attributes = "[sex]" if strict else "[]"
    return f"""
model: deterioration
allowed_modifications: [retrain]
locked: {locked}
frozen_test_set: {{uri: "{uri}", fingerprint: "{fingerprint}"}}
acceptance: {acceptance}
non_inferiority: {{auroc_drop_max: {drop}}}
behaviour: {{flag_rate_change_max: 1.0, decision_flip_max: 1.0, psi_max: 100}}
subgroups: {{attributes: {attributes}, ratio_min: 0.5, ratio_max: 2.0, small_group_min: {subgroup_min}}}
sites: {{ratio_min: 0.5, ratio_max: 2.0}}
n_resamples: 50
"""


@pytest.fixture
def frozen(database, settings):
    store = open_store(settings.artifacts_root)
    uri, fingerprint = freeze_dataset(store, _table(99))
    create_deterioration_model(database)
    register_sites(database, "a", "b")
    for seed, columns in ((1, FEATURES), (2, FEATURES), (3, ["resp_rate"])):
        _register(database, store, _table(seed), columns, seed)
    for number in (1, 2, 3):
        approve_version(database, ALICE, "deterioration", number, reason="reviewed")
    return database, uri, fingerprint


def test_a_proposed_plan_governs_nothing_until_an_approver_puts_it_in_force(frozen):
    database, uri, fingerprint = frozen
    plan_in_force(database, "deterioration", _plan(uri, fingerprint))
    run_pccp_check(database, SCIENTIST, "deterioration", 1)
    deploy_version(database, ALICE, "deterioration", 1, sites=["a"], mode="champion")

    # The submitter files a lenient plan and checks the weakened version under it ...
    lenient = propose_pccp(database, SCIENTIST, "deterioration", _plan(uri, fingerprint, strict=False))
    assert lenient.state == "proposed"
    with database.session() as session:
        assert get_pccp(session, "deterioration").number == 1  # still the strict plan in force
        changed = {c.field for c in diff_pccp(session, "deterioration", lenient.number).changes}
    assert {"acceptance.auroc_low", "non_inferiority.auroc_drop_max", "locked"} <= changed
    check = run_pccp_check(database, SCIENTIST, "deterioration", 3, site="a")
    assert check.pccp_version == 1 and check.status == "failed"
    # ... and cannot put it in force: the proposer may not decide, and approval is an approver's.
    with pytest.raises(PolicyViolation):
        decide_pccp(database, Principal(name="dana", roles=frozenset({Role.APPROVER}), credential="key:d",
                                        personal=True), "deterioration", lenient.number, decision="approve",
                    reason="mine")
    with pytest.raises(GateFailed):
        deploy_version(database, ALICE, "deterioration", 3, sites=["a"], mode="champion")


def test_swapping_the_plan_back_closes_the_gate_a_lenient_plan_opened(frozen):
    database, uri, fingerprint = frozen
    plan_in_force(database, "deterioration", _plan(uri, fingerprint))
    run_pccp_check(database, SCIENTIST, "deterioration", 1)
    deploy_version(database, ALICE, "deterioration", 1, sites=["a"], mode="champion")
    plan_in_force(database, "deterioration", _plan(uri, fingerprint, strict=False))
    lenient_check = run_pccp_check(database, SCIENTIST, "deterioration", 3, site="a")
    assert lenient_check.passed and lenient_check.pccp_version == 2
    plan_in_force(database, "deterioration", _plan(uri, fingerprint))  # the strict plan is back, as v3
    with database.session() as session:
        status = gate_status(session, "deterioration", 3, site="a")
        states = [get_pccp(session, "deterioration", n).state for n in (1, 2, 3)]
    assert states == ["superseded", "superseded", "in_force"]
    assert not status.open and "judged plan v2; plan v3 is in force" in status.reason
    with pytest.raises(GateFailed, match="plan v3 is in force"):
        deploy_version(database, ALICE, "deterioration", 3, sites=["a"], mode="champion")
    with database.session() as session:
        refused = list_events(session, action="deployment.refused")[0]
    assert refused.actor == "alice" and refused.credential == "key:alice" and refused.payload["code"] == "gate_failed"


def test_a_threshold_change_and_reapproval_close_the_gate_until_a_new_check(frozen):
    database, uri, fingerprint = frozen
    plan_in_force(database, "deterioration", _plan(uri, fingerprint))
    assert run_pccp_check(database, SCIENTIST, "deterioration", 1).passed
    with database.session() as session:
        stored = get_version_report(session, "deterioration", 1)
        update_version_report(session, SCIENTIST, "deterioration", 1, report=stored | {"threshold": 0.05},
                              report_hash="e" * 64, threshold=0.05, reason="lower threshold")
    approve_version(database, ALICE, "deterioration", 1, reason="re-reviewed at the new threshold")
    with database.session() as session:
        status = gate_status(session, "deterioration", 1, site="a")
    assert not status.open and "operating threshold changed" in status.reason
    assert "validation report changed" in status.reason
    run_pccp_check(database, SCIENTIST, "deterioration", 1)
    with database.session() as session:
        assert gate_status(session, "deterioration", 1, site="a").open


def test_a_check_without_a_champion_does_not_hold_once_one_arrives_and_site_checks_stay_local(frozen):
    database, uri, fingerprint = frozen
    plan_in_force(database, "deterioration", _plan(uri, fingerprint))
    run_pccp_check(database, SCIENTIST, "deterioration", 1)
    assert run_pccp_check(database, SCIENTIST, "deterioration", 2).champion_version is None
    deploy_version(database, ALICE, "deterioration", 1, sites=["a"], mode="champion")
    with database.session() as session:
        status = gate_status(session, "deterioration", 2, site="a")
        assert gate_status(session, "deterioration", 2, site="b").open  # b still has no champion
    assert not status.open and "against no champion; the site now has champion v1" in status.reason
    assert run_pccp_check(database, SCIENTIST, "deterioration", 2, site="a").passed
    deploy_version(database, ALICE, "deterioration", 2, sites=["a"], mode="champion")
    deploy_version(database, ALICE, "deterioration", 1, sites=["b"], mode="champion")
    with database.session() as session:  # v2's check at a judged champion v1 at a, not the site b
        assert not gate_status(session, "deterioration", 2, site="b").open
    with pytest.raises(GateFailed):
        deploy_version(database, ALICE, "deterioration", 2, sites=["b"], mode="champion")


def test_an_incomplete_check_opens_only_through_reviews_that_waive_every_criterion(frozen):
    database, uri, fingerprint = frozen
    with database.session() as session:  # the policy asks for two approvers
        session.query(ModelRow).update({ModelRow.approvals_required: 2})
    plan_in_force(database, "deterioration", _plan(uri, fingerprint, subgroup_min=10_000), approvers=(ALICE, BOB))
    check = run_pccp_check(database, SCIENTIST, "deterioration", 1)
    assert check.status == "incomplete" and not check.passed and not check.failed
    not_evaluable = [c.name for c in check.not_evaluable]
    assert not_evaluable and all(c.startswith("subgroup.sex=") for c in not_evaluable)
    with database.session() as session:
        assert not gate_status(session, "deterioration", 1, site="a").open
    with pytest.raises(InvalidInput, match="missing"):
        record_full_review(database, ALICE, "deterioration", 1, reason="small groups", waives=[])
    with pytest.raises(InvalidInput, match="has no criteria"):
        record_full_review(database, ALICE, "deterioration", 1, reason="x", waives=[*not_evaluable, "made.up"])
    with pytest.raises(PolicyViolation):  # the submitter reviews nothing of theirs
        record_full_review(database, Principal(name="dana", roles=frozenset({Role.APPROVER}), credential="key:d",
                                               personal=True), "deterioration", 1, reason="x", waives=not_evaluable)
    first = record_full_review(database, ALICE, "deterioration", 1, reason="groups too small", waives=not_evaluable)
    assert not first.open and first.reviewed_by == ["alice"] and first.reviews_required == 2
    with pytest.raises(Conflict):
        record_full_review(database, ALICE, "deterioration", 1, reason="again", waives=not_evaluable)
    second = record_full_review(database, CAROL, "deterioration", 1, reason="agreed", waives=not_evaluable)
    assert second.open and second.reviewed_by == ["alice", "carol"]


def test_frozen_test_sets_must_be_verified_artifacts_of_this_installation(frozen):
    database, uri, fingerprint = frozen
    for bad_uri in ("/etc/passwd", "https://example.org/frozen.parquet", "artifact:" + "0" * 64):
        with pytest.raises(InvalidInput, match="frozen_test_set|frozen test set"):
            propose_pccp(database, SCIENTIST, "deterioration", _plan(bad_uri, bad_uri.removeprefix("artifact:")))
    with pytest.raises(InvalidInput, match="fingerprint"):
        propose_pccp(database, SCIENTIST, "deterioration", _plan(uri, "f" * 64))
    with pytest.raises(NotFound, match="no change-control plan"):
        run_pccp_check(database, SCIENTIST, "deterioration", 1)


def test_deployments_go_to_registered_sites_only(frozen, cli):
    database, uri, fingerprint = frozen
    plan_in_force(database, "deterioration", _plan(uri, fingerprint))
    with pytest.raises(InvalidInput, match="site 'nowhere' is not registered here; registered sites: a, b"):
        deploy_version(database, SCIENTIST, "deterioration", 1, sites=["nowhere"], mode="shadow")
    history = cli("deployments", "history", "deterioration", "--site", "nowhere")
    assert history.exit_code == 2 and "not registered" in history.stderr
