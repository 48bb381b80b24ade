"""The prediction log's archive: rows move from the database into the lake's Delta table, served and
shadow, exactly once even when a run dies between writing and deleting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import orjson
import pytest
from sqlalchemy import func, select

from tests.serving.test_predict import CLINICIAN, _row
from vitalops.audit import list_events
from vitalops.auth import Principal, Role
from vitalops.db.tables.serving import PredictionRow
from vitalops.errors import InvalidInput, PermissionDenied
from vitalops.lake.archive import PREDICTION_ARCHIVE_SCHEMA, PredictionArchive
from vitalops.serving import PredictionRequest, predict, record_outcome
from vitalops.serving import archive as archive_module
from vitalops.serving.archive import archive_predictions, parse_age

OPERATOR = Principal(name="otto", roles=frozenset({Role.OPERATOR}))
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _predict(served, index: int, at: datetime) -> str:
    outcome = predict(served.database, served.context, CLINICIAN, "deterioration",
                      PredictionRequest(site="north", features=_row(served, index),
                                        patient_key=f"{index:064x}", at=at, request_id=f"req-{index}"))
    outcome.run_deferred()
    return outcome.prediction.id


def _logged(served) -> int:
    with served.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(PredictionRow)) or 0)


def _archive(tmp_path, name: str = "lake"):
    return PredictionArchive(str(tmp_path / name)).dataset().to_table()


def _log_history(served) -> tuple[list[str], str]:
    """Five old predictions with a shadow beside each, one with an outcome, and one recent one."""
    served.deploy(2, "shadow", "north")
    old = [_predict(served, index, NOW - timedelta(days=10, hours=index)) for index in range(5)]
    record_outcome(served.database, CLINICIAN, old[0], outcome=1, observed_at=NOW - timedelta(days=9),
                   source="ehr")
    recent = _predict(served, 7, NOW - timedelta(days=1))
    return old, recent


def test_old_rows_move_into_the_archive_as_logged(served, tmp_path):
    old, recent = _log_history(served)
    with served.database.session() as session:
        logged = {row.id: (row.score, row.features_json, row.explanation_json, row.mode, row.served)
                  for row in session.scalars(select(PredictionRow))}
    summary = archive_predictions(served.database, OPERATOR, str(tmp_path / "lake"), now=NOW)
    # 5 old served and their 5 shadows, less the one with an outcome
    assert summary["moved"] == summary["newly_archived"] == 9
    archived = _archive(tmp_path)
    assert archived.schema.names == PREDICTION_ARCHIVE_SCHEMA.names
    rows = archived.to_pylist()
    assert sorted(r["mode"] for r in rows) == ["champion"] * 4 + ["shadow"] * 5
    for row in rows:
        assert (row["score"], row["features_json"], row["explanation_json"], row["mode"], row["served"]) == \
            logged[row["prediction_id"]]
        assert row["features"] == orjson.loads(row["features_json"])
        assert row["day"] == row["at"].strftime("%Y-%m-%d") and row["model"] == "deterioration"
        assert len(row["feature_names"]) == len(row["features"])
    with served.database.session() as session:
        remaining = set(session.scalars(select(PredictionRow.id)))
        audited = list_events(session, action="predictions.archived")
    assert old[0] in remaining and recent in remaining and len(remaining) == 3  # and the recent one's shadow
    assert sum(event.payload["moved"] for event in audited) == 9
    assert "patient_key" not in orjson.dumps([e.payload for e in audited]).decode()


def test_a_crash_between_writing_and_deleting_then_a_rerun_give_the_clean_archive(served, tmp_path, monkeypatch):
    old, recent = _log_history(served)
    with served.database.session() as session:
        before = {row.id: (row.score, row.features_json, row.mode) for row in session.scalars(select(PredictionRow))}
        still_logged = {old[0], recent, *session.scalars(select(PredictionRow.id).where(
            PredictionRow.request_id == "req-7"))}
    real_delete = archive_module._delete
    calls = {"n": 0}

    def dies_on_the_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed after the archive write of chunk 2")
        real_delete(*args, **kwargs)

    monkeypatch.setattr(archive_module, "_delete", dies_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        archive_predictions(served.database, OPERATOR, str(tmp_path / "lake"), now=NOW, chunk_rows=3)
    monkeypatch.setattr(archive_module, "_delete", real_delete)
    assert _logged(served) == 12 - 3  # the first chunk moved; the second is in both places
    rerun = archive_predictions(served.database, OPERATOR, str(tmp_path / "lake"), now=NOW, chunk_rows=3)
    assert rerun["moved"] == 6 and rerun["newly_archived"] == 3  # chunk 2 again adds nothing
    again = archive_predictions(served.database, OPERATOR, str(tmp_path / "lake"), now=NOW)
    assert again["moved"] == 0
    archived = _archive(tmp_path)
    ids = archived.column("prediction_id").to_pylist()
    assert len(ids) == len(set(ids)) == 9
    # what a clean run archives: every old row without an outcome, as logged
    assert {row["prediction_id"]: (row["score"], row["features_json"], row["mode"]) for row in archived.to_pylist()} \
        == {key: value for key, value in before.items() if key not in still_logged}


def test_monitoring_reads_the_archive_with_duckdb(served, tmp_path):
    _log_history(served)
    archive_predictions(served.database, OPERATOR, str(tmp_path / "lake"), now=NOW)
    connection = duckdb.connect()
    connection.register("archive", PredictionArchive(str(tmp_path / "lake")).dataset())
    first = served.training_set.feature_names[0]
    rows = connection.sql(
        "SELECT mode, count(*), avg(score), "
        f"count(features[list_position(feature_names, '{first}')]) FROM archive GROUP BY mode ORDER BY mode"
    ).fetchall()
    connection.close()
    assert [(mode, count) for mode, count, _, _ in rows] == [("champion", 4), ("shadow", 5)]
    assert all(0 < mean < 1 for _, _, mean, _ in rows)


def test_archiving_needs_a_data_role_and_a_readable_age(served, tmp_path):
    with pytest.raises(PermissionDenied):
        archive_predictions(served.database, CLINICIAN, str(tmp_path / "lake"), now=NOW)
    assert parse_age("7d") == timedelta(days=7) and parse_age("12h") == timedelta(hours=12)
    with pytest.raises(InvalidInput):
        parse_age("a week")
    assert _archive(tmp_path).num_rows == 0
