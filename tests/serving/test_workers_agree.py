"""Several stateless workers (each its own serving context: loaded versions, routing cache) over one
database agree at once: a deployment or a rollback made anywhere is what every worker serves next,
and a canary splits patients the same way in each."""

from __future__ import annotations

from tests.governance.plans import ALICE
from tests.serving.test_predict import CLINICIAN, _patient_keys, _row
from vitalops.registry.deployments import apply_rollback
from vitalops.serving import LakeFacts, PredictionRequest, Runtime, ServingContext, predict


def _worker(served) -> ServingContext:
    lake = served.lake
    return ServingContext(Runtime(served.context.runtime.store, lake.terminology), LakeFacts(lake.lake_root),
                          lake.pseudonymizer, lake.terminology)


def _served_by(served, worker: ServingContext, patient_key: str) -> tuple[int, str]:
    prediction = predict(served.database, worker, CLINICIAN, "deterioration",
                         PredictionRequest(site="north", features=_row(served, 1), patient_key=patient_key)).prediction
    return prediction.version, prediction.mode


def test_workers_see_a_deployment_and_a_rollback_at_once_and_split_a_canary_alike(served):
    workers = [_worker(served), _worker(served)]
    assert [_served_by(served, w, "p-1") for w in workers] == [(1, "champion"), (1, "champion")]  # both warm

    served.deploy(2, "champion", "north")  # as if through a third worker
    assert [_served_by(served, w, "p-1") for w in workers] == [(2, "champion"), (2, "champion")]

    with served.database.session() as session:
        apply_rollback(session, actor=ALICE, name="deterioration", site="north", reason="test")
    assert [_served_by(served, w, "p-1") for w in workers] == [(1, "champion"), (1, "champion")]

    served.deploy(2, "canary:30", "north")
    keys = _patient_keys(served)[:60]
    sides = [[_served_by(served, w, key) for key in keys] for w in workers]
    assert sides[0] == sides[1]
    assert {mode for _, mode in sides[0]} == {"champion", "canary"}
