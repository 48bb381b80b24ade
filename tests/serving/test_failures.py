"""Failed predictions are counted against the version that was scoring, in a transaction of their own:
through the service and the real API (with the group log writer), a shadow whose artifact cannot load,
a shadow that fails after the response, an artifact missing from the store; requests that never
reached the model are not counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select

from tests.conftest import bearer
from tests.governance.plans import SCIENTIST
from tests.serving.test_predict import CLINICIAN, _row
from vitalops.artifacts import read_bundle, save_model
from vitalops.db.tables.serving import PredictionRow, ServingErrorCountRow
from vitalops.errors import InvalidInput, ServiceUnavailable
from vitalops.registry.schemas import Signature, VersionCreate
from vitalops.registry.versions import create_version, get_version
from vitalops.serving import PredictionRequest, predict
from vitalops.serving.log_writer import LogWriter
from vitalops.training.datasets import labelled_rows
from vitalops.validation.report import build_report
from vitalops.validation.thresholds import ThresholdRule

AT = datetime(2026, 1, 15, 9, 41, tzinfo=UTC)
HOUR = datetime(2026, 1, 15, 9, tzinfo=UTC)


def _counters(served) -> list[tuple[int, str, datetime, bool, str, int, int]]:
    with served.database.session() as session:
        rows = session.execute(select(ServingErrorCountRow)).scalars().all()
        return sorted((r.version, r.site, r.hour_start, r.served, r.code, r.http_status, r.count) for r in rows)


def _logged(served) -> int:
    with served.database.session() as session:
        return session.query(PredictionRow).count()


def _model_blob(served, number: int) -> Path:
    store = served.context.runtime.store
    with served.database.session() as session:
        artifact = get_version(session, "deterioration", number).artifact_sha256
    blob = Path(urlparse(store.uri(read_bundle(store, artifact).model_sha256)).path)
    blob.chmod(0o644)
    return blob


def test_rest_refusals_of_a_known_model_are_counted_and_others_are_not(served, live_server, api_client, make_user):
    served.context.writer = LogWriter(served.database)  # as a server runs: failures share the group commit
    live_server.server.config.app.state.serving = served.context
    _, key = make_user("clinician", "casey")
    missing = _row(served, 2)
    del missing[next(iter(missing))]
    url = "/v1/models/deterioration/predict"
    for _ in range(2):
        refused = api_client.post(url, headers=bearer(key), json={"site": "north", "features": missing,
                                                                   "at": AT.isoformat()})
        assert refused.status_code == 422 and refused.json()["code"] == "invalid_input"
    never = [
        api_client.post(url, headers=bearer(key), json={"features": missing}),  # no site: the body's shape
        api_client.post("/v1/models/nope/predict", headers=bearer(key), json={"site": "north", "features": missing}),
        api_client.post(url, headers=bearer(key), json={"site": "nowhere", "features": missing}),
        api_client.post(url, json={"site": "north", "features": missing}),  # no credentials
    ]
    assert [r.status_code for r in never] == [422, 404, 422, 401]
    ok = api_client.post(url, headers=bearer(key), json={"site": "north", "features": _row(served, 2)})
    assert ok.status_code == 200
    assert _counters(served) == [(1, "north", HOUR, True, "invalid_input", 422, 2)]
    assert _logged(served) == 1


def test_a_shadow_whose_artifact_fails_verification_fails_the_request_and_is_counted_against_it(served):
    served.deploy(2, "shadow")
    blob = _model_blob(served, 2)
    blob.write_bytes(blob.read_bytes()[:-5] + b"xxxxx")
    with pytest.raises(ServiceUnavailable, match="fails verification"):
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="north", features=_row(served), patient_key="p1", at=AT))
    assert _counters(served) == [(2, "north", HOUR, True, "service_unavailable", 503, 1)]
    assert _logged(served) == 0


def test_an_artifact_missing_from_the_store_is_a_server_error(served):
    served.deploy(2, "champion", "south")
    _model_blob(served, 2).unlink()
    with pytest.raises(ServiceUnavailable, match="not in the store") as raised:
        predict(served.database, served.context, CLINICIAN, "deterioration",
                PredictionRequest(site="south", features=_row(served), at=AT))
    assert raised.value.details["reason"] == "artifact_missing"
    assert _counters(served) == [(2, "south", HOUR, True, "service_unavailable", 503, 1)]


def test_a_shadow_that_fails_after_the_response_counts_against_itself_not_the_request(served):
    # version 3 cannot score a missing value (no imputer); the champion can
    rows = labelled_rows(served.training_set.table, served.training_set.feature_names)
    filled = np.where(np.isnan(rows.features), np.nanmedian(rows.features, axis=0), rows.features)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))]).fit(filled,
                                                                                                   rows.labels)
    bundle = save_model(served.context.runtime.store, model, flavor="sklearn",
                        feature_names=served.training_set.feature_names)
    report = build_report(rows.labels, model.predict_proba(filled)[:, 1], threshold_rule=ThresholdRule("fixed", 0.2),
                          groups={}, n_resamples=20, seed=3, threshold=0.2)
    names = served.training_set.feature_names
    with served.database.session() as session:
        create_version(session, SCIENTIST, "deterioration", VersionCreate(
            source="registered", state="validated", dataset_fingerprint=served.training_set.fingerprint.content_sha256,
            definitions_version=served.training_set.spec.version, code_version="test",
            estimator="logistic_regression", flavor="sklearn", signature=Signature.of(names),
            artifact_sha256=bundle.sha256, threshold=0.2, report=report.model_dump(mode="json"),
            report_hash=report.content_hash()))
    served.deploy(3, "shadow")
    features = _row(served) | {served.training_set.feature_names[0]: None}
    outcome = predict(served.database, served.context, CLINICIAN, "deterioration",
                      PredictionRequest(site="north", features=features, patient_key="p2", at=AT))
    assert outcome.prediction.version == 1
    with pytest.raises(InvalidInput, match="cannot score a missing value"):
        outcome.run_deferred()
    assert _counters(served) == [(3, "north", HOUR, False, "invalid_input", 422, 1)]
    assert _logged(served) == 1
