"""Outcomes of logged predictions from the lake, by the model's own label definition.

A prediction made at ``at`` for a patient is labelled exactly as a training row with index time
``at`` would be (``features.labels.compute_labels``): the outcome facts effective within the
label's horizon after ``at``, read point-in-time as the lake knew them at ``as_of`` (the monitoring
run's ``now``, or the lake's latest known time when that is earlier). A prediction whose horizon
has not passed by then has no label yet; one without a patient key (features sent by value and no
identifier) cannot be joined and has none.

An encounter-kind label (a readmission) needs the index encounter: the patient's encounter of the
cohort's classes that started last at or before ``at``.

The result maps each labelled prediction id to ``(known_at, outcome)``, the same shape as the
outcomes recorded through ``/v1/outcomes``, so that when both exist the most recently known wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from vitalops.core import duck
from vitalops.features.definitions import DatasetSpec
from vitalops.features.facts_view import ENCOUNTER_CONCEPT, ENGINE_COLUMNS, known_by, register_facts
from vitalops.features.labels import compute_labels
from vitalops.lake.facts import FactsStore

#: The source name of an outcome taken from the lake (beside the sources of ``/v1/outcomes``).
LAKE_SOURCE = "lake"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def lake_known_until(lake_root: str) -> datetime | None:
    """The latest time anything in the lake's facts is known (None for an empty or missing lake)."""
    return FactsStore(lake_root).latest_known_at()


def lake_outcomes(lake_root: str, specs: Mapping[int, DatasetSpec], predictions: pa.Table, *,
                  now: datetime) -> dict[str, tuple[datetime, int]]:
    """Per prediction id: (when its label became known, the outcome) for the predictions of each
    version in ``specs`` (its registered definitions) whose label horizon has passed by ``now``
    as the lake knows it. ``predictions`` has the monitoring columns (``prediction_id``, ``version``,
    ``patient_key``, ``at``)."""
    keyed = predictions.filter(pc.is_valid(predictions["patient_key"]))
    store = FactsStore(lake_root)
    if keyed.num_rows == 0 or not specs or not store.exists():
        return {}
    known_until = store.latest_known_at()
    if known_until is None:
        return {}
    dataset = store.dataset()
    as_of_us = _us(min(now, known_until))
    outcomes: dict[str, tuple[datetime, int]] = {}
    for version, spec in specs.items():
        rows = keyed.filter(pc.equal(keyed["version"], version))
        if rows.num_rows:
            outcomes.update(_labels(dataset, spec, rows, as_of_us))
    return outcomes


def _labels(dataset: ds.Dataset, spec: DatasetSpec, rows: pa.Table, as_of_us: int
            ) -> dict[str, tuple[datetime, int]]:
    label = spec.label
    kinds = sorted({"encounter"} | {o.kind for o in label.outcomes})
    keys = pc.unique(rows["patient_key"])
    facts = dataset.to_table(
        columns=list(ENGINE_COLUMNS),
        filter=pc.field("patient_key").isin(keys) & pc.field("kind").isin(kinds))
    con = duck.connect()
    try:
        register_facts(con, facts)
        row_ids = pa.array(range(rows.num_rows), pa.int64())
        numbered = rows.select(["patient_key", "at"]).append_column("row_id", row_ids)
        con.register("predictions_in", numbered)
        classes = ", ".join("'" + c.replace("'", "''") + "'" for c in sorted(set(spec.cohort.encounter_classes)))
        # The index encounter (used only by encounter-kind labels): the stay that started last by ``at``.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE idx AS
            WITH p AS (
                SELECT row_id, patient_key, epoch_us("at") AS t_us FROM predictions_in
            ),
            stays AS (
                SELECT f.patient_key, f.encounter_key, min(f.eff_us) AS start_us FROM f
                WHERE f.kind = 'encounter' AND f.concept = '{ENCOUNTER_CONCEPT}' AND f.encounter_key IS NOT NULL
                  AND f.value_code IN ({classes or "''"}) AND {known_by("f", str(as_of_us))}
                GROUP BY f.patient_key, f.encounter_key
            )
            SELECT p.row_id, p.patient_key, p.t_us,
                   arg_max(s.encounter_key, s.start_us) AS encounter_key
            FROM p LEFT JOIN stays s ON s.patient_key = p.patient_key AND s.start_us <= p.t_us
            GROUP BY p.row_id, p.patient_key, p.t_us
            ORDER BY p.row_id
        """)
        con.unregister("predictions_in")
        labels = compute_labels(con, label, as_of_us)
    finally:
        con.close()
    outcome = labels["label"].to_pylist()
    known = labels["label_known_at"].to_pylist()
    ids = rows["prediction_id"].to_pylist()
    return {prediction_id: (when.astimezone(UTC), int(value))
            for prediction_id, value, when in zip(ids, outcome, known, strict=True) if value is not None}
