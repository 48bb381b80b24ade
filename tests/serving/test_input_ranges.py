"""Inputs held against the range the version was trained on: flagged for review within the plan's
tolerance, refused beyond it (naming the feature, with no log row), the tolerance the plan's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import bearer
from tests.governance.plans import ALICE, BOB, SCIENTIST, plan_in_force
from tests.serving.test_predict import CLINICIAN, _row
from vitalops.artifacts import open_store, save_model
from vitalops.db.tables.cdshooks import ReviewItemRow
from vitalops.db.tables.serving import PredictionRow
from vitalops.errors import InvalidInput
from vitalops.registry.input_ranges import InputRanges, observed_ranges
from vitalops.registry.schemas import Signature, VersionCreate
from vitalops.registry.versions import create_version
from vitalops.serving import PredictionRequest, get_prediction, predict
from vitalops.serving.routing import RoutingCache
from vitalops.training.datasets import freeze_dataset, labelled_rows
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule


def test_observed_ranges_ignore_missing_values_and_name_unobserved_features():
    features = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, np.nan], [2.0, np.nan, -1.0]])
    assert observed_ranges(features, ["a", "b", "c"]) == {"a": [1.0, 3.0], "b": None, "c": [-1.0, 5.0]}
    ranges = InputRanges.from_lineage({"input_ranges": {"a": [1.0, 3.0], "b": None, "c": [2.0, 2.0]}},
                                      ["a", "b", "c"])
    assert ranges is not None
    assert ranges.outside(np.array([np.nan, 1e9, 2.0])) == []  # missing is not outside; unobserved is unbounded
    assert ranges.check(np.array([3.4, 0.0, 2.0]), 0.25, what="m v1") == ["a"]
    with pytest.raises(InvalidInput, match="'c'") as refused:
        ranges.check(np.array([2.0, 0.0, 2.6]), 0.25, what="m v1")  # zero width: widened to |2|, so 0.5 allowed
    assert refused.value.details["field"] == "features.c"
    assert ranges.check(np.array([2.0, 0.0, 2.4]), 0.25, what="m v1") == ["c"]
    assert InputRanges.from_lineage({}, ["a"]) is None


def _with_ranges(served) -> tuple[dict[str, list[float] | None], list[str]]:
    """Version 3: version 1's model, registered with the training ranges it records, champion at north."""
    names = served.training_set.feature_names
    rows = labelled_rows(served.training_set.table, names)
    ranges = observed_ranges(rows.features, names)
    model = served.models[1]
    bundle = save_model(served.context.runtime.store, model, flavor="sklearn", feature_names=names)
    scores = model.predict_proba(rows.features)[:, 1]
    report = build_report(rows.labels, scores, threshold_rule=ThresholdRule("fixed", 0.2), groups={}, n_resamples=20,
                          seed=3, threshold=0.2)
    with served.database.session() as session:
        create_version(session, SCIENTIST, "deterioration", VersionCreate(
            source="registered", state="validated", dataset_fingerprint=served.training_set.fingerprint.content_sha256,
            definitions_version=served.training_set.spec.version, code_version="test", estimator="logistic_regression",
            flavor="sklearn", signature=Signature.of(names), artifact_sha256=bundle.sha256, threshold=0.2,
            report=report.model_dump(mode="json"), report_hash=report.content_hash(),
            lineage={"input_ranges": ranges}))
    served.deploy(3, "champion", "north")
    bounded = [n for n in names if ranges[n] is not None and ranges[n][1] > ranges[n][0]]
    return ranges, bounded


def _count(served, table) -> int:
    with served.database.session() as session:
        return session.query(table).count()


def test_a_value_beyond_the_training_range_is_flagged_within_tolerance_and_refused_beyond(served):
    ranges, bounded = _with_ranges(served)
    name = bounded[0]
    low, high = ranges[name]
    width = high - low
    inside = _row(served, 0) | {name: high}
    assert predict(served.database, served.context, CLINICIAN, "deterioration",
                   PredictionRequest(site="north", features=inside)).prediction.out_of_range == []

    flagged = predict(served.database, served.context, CLINICIAN, "deterioration",
                      PredictionRequest(site="north", features=inside | {name: high + 0.1 * width}))
    assert flagged.prediction.version == 3 and flagged.prediction.out_of_range == [name]
    assert get_prediction(served.database, CLINICIAN, flagged.prediction.id).out_of_range == [name]

    logged = _count(served, PredictionRow)
    with pytest.raises(InvalidInput, match=f"'{name}' lies outside the range") as refused:
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="north", features=inside | {name: low - 0.3 * width}))
    assert refused.value.details == {"field": f"features.{name}", "reason": "outside_training_range"}
    # Neither the value nor the range's ends (each one training patient's value) is echoed.
    assert refused.value.message == (f"'{name}' lies outside the range deterioration v3 was trained on by more "
                                     "than its change-control plan allows (0.25 of the range's width)")
    assert _count(served, PredictionRow) == logged

    # Version 1 records no ranges: the same vector is served at south, unflagged.
    far = predict(served.database, served.context, CLINICIAN, "deterioration",
                  PredictionRequest(site="south", features=inside | {name: high + 5 * width}))
    assert far.prediction.version == 1 and far.prediction.out_of_range == []


def test_the_plan_in_force_sets_the_tolerance(served, settings):
    ranges, bounded = _with_ranges(served)
    name = bounded[0]
    low, high = ranges[name]
    features = _row(served, 0) | {name: high + 0.1 * (high - low)}
    uri, fingerprint = freeze_dataset(open_store(settings.artifacts_root), served.training_set.table)
    plan_in_force(served.database, "deterioration", f"""
model: deterioration
allowed_modifications: [retrain]
frozen_test_set: {{uri: "{uri}", fingerprint: "{fingerprint}"}}
inputs: {{range_tolerance: 0.0}}
""", approvers=(ALICE, BOB))
    served.context.routing = RoutingCache()  # a worker started after the plan took force
    with pytest.raises(InvalidInput, match="0 of the range's width"):
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="north", features=features))


def test_rest_predict_queues_an_out_of_range_prediction_for_review(served, live_server, api_client, make_user):
    ranges, bounded = _with_ranges(served)
    name = bounded[0]
    low, high = ranges[name]
    live_server.server.config.app.state.serving = served.context
    _, key = make_user("clinician", "casey")
    features = _row(served, 0) | {name: high + 0.1 * (high - low)}
    response = api_client.post("/v1/models/deterioration/predict", headers=bearer(key),
                               json={"site": "north", "features": features})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["out_of_range"] == [name]
    assert body["review"]["queued"] is True
    assert "outside_training_range" in [reason["rule"] for reason in body["review"]["reasons"]]
    with served.database.session() as session:
        item = session.query(ReviewItemRow).filter(ReviewItemRow.prediction_id == body["id"]).one()
    assert item.state == "pending"
    refused = api_client.post("/v1/models/deterioration/predict", headers=bearer(key),
                              json={"site": "north", "features": features | {name: high + 3 * (high - low)}})
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["details"]["field"] == f"features.{name}"
    assert not math.isnan(body["score"])


def test_a_missing_value_is_refused_by_a_model_that_cannot_score_one(served):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    names = served.training_set.feature_names
    rows = labelled_rows(served.training_set.table, names)
    complete = ~np.isnan(rows.features).any(axis=1)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
    model.fit(np.nan_to_num(rows.features), rows.labels)  # no imputer: it cannot score a missing value
    bundle = save_model(served.context.runtime.store, model, flavor="sklearn", feature_names=names)
    scores = model.predict_proba(np.nan_to_num(rows.features))[:, 1]
    report = build_report(rows.labels, scores, threshold_rule=ThresholdRule("fixed", 0.2), groups={}, n_resamples=20,
                          seed=4, threshold=0.2)
    with served.database.session() as session:
        create_version(session, SCIENTIST, "deterioration", VersionCreate(
            source="registered", state="validated", dataset_fingerprint=served.training_set.fingerprint.content_sha256,
            definitions_version=served.training_set.spec.version, code_version="test", estimator="logistic_regression",
            flavor="sklearn", signature=Signature.of(names), artifact_sha256=bundle.sha256, threshold=0.2,
            report=report.model_dump(mode="json"), report_hash=report.content_hash()))
    served.deploy(3, "champion", "south")
    index = int(np.flatnonzero(complete)[0])
    whole = _row(served, index)
    assert predict(served.database, served.context, CLINICIAN, "deterioration",
                   PredictionRequest(site="south", features=whole)).prediction.version == 3
    logged = _count(served, PredictionRow)
    gap = names[2]
    with pytest.raises(InvalidInput, match=f"'{gap}' is missing") as refused:
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="south", features=whole | {gap: None}))
    assert refused.value.details["field"] == f"features.{gap}"
    assert _count(served, PredictionRow) == logged
    # The champion at north imputes: the same gap is scored there.
    assert predict(served.database, served.context, CLINICIAN, "deterioration",
                   PredictionRequest(site="north", features=whole | {gap: None})).prediction.version == 1
