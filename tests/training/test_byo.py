from __future__ import annotations

import numpy as np
import pytest

from tests.training.test_trainer import FEATURES, SCIENTIST, dataset
from vitalops.artifacts import open_store
from vitalops.errors import InvalidInput
from vitalops.registry.schemas import ModelCreate
from vitalops.registry.versions import create_model, list_versions
from vitalops.training.byo import register_model_file
from vitalops.training.datasets import freeze_dataset, labelled_rows


def test_brought_lightgbm_model_is_checked_validated_and_registered(database, settings, tmp_path):
    import lightgbm

    table = dataset(seed=4)
    uri, _ = freeze_dataset(open_store(settings.artifacts_root), table)
    rows = labelled_rows(table, FEATURES)
    booster = lightgbm.LGBMClassifier(n_estimators=30, n_jobs=1, verbose=-1).fit(rows.features, rows.labels)
    model_file = tmp_path / "model.txt"
    model_file.write_text(booster.booster_.model_to_string())
    with database.session() as session:
        create_model(
            session,
            SCIENTIST,
            ModelCreate(
                name="deterioration", intended_use="early warning", clinical_owner="ward", target_population="adults"
            ),
        )
    with pytest.raises(InvalidInput) as caught:
        register_model_file(
            database,
            SCIENTIST,
            "deterioration",
            model_file,
            flavor="lightgbm",
            dataset_uri=uri,
            feature_names=FEATURES[:2],
            n_resamples=20,
        )
    assert "3 inputs" in caught.value.message
    result = register_model_file(
        database,
        SCIENTIST,
        "deterioration",
        model_file,
        flavor="lightgbm",
        dataset_uri=uri,
        feature_names=FEATURES,
        n_resamples=20,
    )
    assert result.version.source == "registered" and result.version.state == "validated"
    assert 0.0 < result.version.threshold < 1.0 and np.isfinite(result.version.threshold)
    with database.session() as session:
        assert [v.number for v in list_versions(session, "deterioration")] == [1]
