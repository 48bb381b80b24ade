from __future__ import annotations

import pytest

from vitalops.audit import list_events
from vitalops.auth import Principal, Role
from vitalops.errors import Conflict, NotFound
from vitalops.registry.lifecycle import TRANSITIONS, VersionState
from vitalops.registry.schemas import ModelCreate, Signature, VersionCreate
from vitalops.registry.versions import (
    create_model,
    create_version,
    get_version,
    list_transitions,
    list_versions,
    update_version_state,
)

SCIENTIST = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))


def _version(state: str = "validated") -> VersionCreate:
    return VersionCreate(
        source="trained",
        state=state,
        dataset_fingerprint="f" * 64,
        definitions_version="d1",
        code_version="0.1.0",
        estimator="logistic_regression",
        flavor="sklearn",
        signature=Signature.of(["hr", "rr"]),
        artifact_sha256="a" * 64,
        threshold=0.3,
        report={"auroc": 0.8},
        report_hash="r" * 64,
    )


def _model(name: str = "deterioration") -> ModelCreate:
    return ModelCreate(
        name=name,
        intended_use="early warning",
        clinical_owner="Dr. Ward",
        target_population="adult inpatients",
    )


def test_versions_are_numbered_and_transitions_audited(database):
    with database.session() as session:
        create_model(session, SCIENTIST, _model())
        first = create_version(session, SCIENTIST, "deterioration", _version())
        second = create_version(session, SCIENTIST, "deterioration", _version("draft"))
    assert (first.number, second.number) == (1, 2)
    assert first.submitter == "dana" and first.signature.feature_names == ["hr", "rr"]
    with database.session() as session:
        retired = update_version_state(session, SCIENTIST, "deterioration", 1, "retired", reason="superseded")
        assert retired.state == "retired"
        assert [t.to_state for t in list_transitions(session, "deterioration", 1)] == ["validated", "retired"]
        events = list_events(session, object_type="model_version", object_id="deterioration/1")
        assert {e.action for e in events} == {"model.version.create", "model.version.transition"}
        assert [v.number for v in list_versions(session, "deterioration", state="draft")] == [2]


def test_illegal_transition_is_a_conflict_and_changes_nothing(database):
    with database.session() as session:
        create_model(session, SCIENTIST, _model())
        create_version(session, SCIENTIST, "deterioration", _version("draft"))
    with pytest.raises(Conflict) as caught, database.session() as session:
        update_version_state(session, SCIENTIST, "deterioration", 1, "approved", reason="skip review")
    assert "draft" in caught.value.message
    with database.session() as session:
        assert get_version(session, "deterioration", 1).state == "draft"


def test_duplicate_model_and_missing_version(database):
    with database.session() as session:
        create_model(session, SCIENTIST, _model())
    with pytest.raises(Conflict), database.session() as session:
        create_model(session, SCIENTIST, _model())
    with pytest.raises(NotFound), database.session() as session:
        get_version(session, "deterioration", 9)


def test_transition_table_covers_every_state():
    assert set(TRANSITIONS) == set(VersionState)
    assert VersionState.REJECTED in TRANSITIONS[VersionState.VALIDATED]
    assert not TRANSITIONS[VersionState.RETIRED]
