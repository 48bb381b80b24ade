"""Serving by patient key reads the online store once it is written (the lake before that), and a
prediction from it equals the one from the lake and the offline training row; on SQLite and Redis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.features.online_backends import BACKENDS, open_store
from tests.serving.test_predict import CLINICIAN, _row
from vitalops.core.settings import get_settings
from vitalops.features.facts_view import ENGINE_COLUMNS
from vitalops.features.online_store import open_online_store, rebuild
from vitalops.lake.facts import FactsStore
from vitalops.serving import LakeFacts, OnlineFacts, PredictionRequest, predict
from vitalops.serving.service import default_context


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_prediction_by_patient_key_from_the_online_store_equals_the_offline_row(
    served, backend: str, tmp_path: Path
) -> None:
    facts = FactsStore(served.lake.lake_root).dataset().to_table(columns=list(ENGINE_COLUMNS))
    for store in open_store(backend, tmp_path):
        rebuild(store, facts, None)
        context = dataclasses.replace(served.context, facts=OnlineFacts(store))
        table = served.training_set.table
        for index in (0, table.num_rows // 3, table.num_rows - 1):
            key, at = table.column("patient_key")[index].as_py(), table.column("index_time")[index].as_py()
            online = predict(served.database, context, CLINICIAN, "deterioration",
                             PredictionRequest(site="north", patient_key=key, at=at)).prediction
            lake = predict(served.database, served.context, CLINICIAN, "deterioration",
                           PredictionRequest(site="north", patient_key=key, at=at)).prediction
            assert online.features == lake.features == _row(served, index)
            assert online.score == lake.score


def test_the_context_reads_the_lake_until_the_store_is_written(settings, monkeypatch, tmp_path) -> None:
    assert isinstance(default_context(settings).facts, LakeFacts)
    url = f"sqlite:///{tmp_path / 'online.db'}"
    monkeypatch.setenv("VITALOPS_ONLINE_STORE_URL", url)
    get_settings.cache_clear()
    store = open_online_store(url)
    store.record(None)
    store.close()
    assert isinstance(default_context(get_settings()).facts, OnlineFacts)
