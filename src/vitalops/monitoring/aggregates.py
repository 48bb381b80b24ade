"""The aggregation step: the prediction log (database rows and the lake's archive) and the lake's
facts reduced with DuckDB to small per-window aggregates, which the statistics then judge.

Windows are fixed-length intervals aligned to the Unix epoch in UTC (a ``1d`` window runs from
midnight to midnight UTC). Every aggregate is keyed by (version, site, window start in
microseconds since the epoch). Patient keys are read only to resample patients for intervals; they
never leave this process in a result.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from vitalops.core import duck
from vitalops.core.clock import as_utc
from vitalops.core.extras import import_extra
from vitalops.db.tables.cdshooks import CardFeedbackRow
from vitalops.db.tables.registry import ModelRow, ModelVersionRow
from vitalops.db.tables.serving import OutcomeRow, PredictionRow
from vitalops.errors import InvalidInput
from vitalops.lake.archive import PredictionArchive
from vitalops.monitoring.stats import Distribution

_TS = pa.timestamp("us", tz="UTC")
PREDICTION_COLUMNS = pa.schema([
    ("prediction_id", pa.string()), ("at", _TS), ("version", pa.int64()), ("site", pa.string()),
    ("mode", pa.string()), ("score", pa.float64()), ("decision", pa.bool_()),
    ("features", pa.list_(pa.float64())), ("latency_ms", pa.float64()), ("patient_key", pa.string()),
])
Key = tuple[int, str, int]  # version, site, window start (us since the epoch)


def epoch_us(moment: datetime) -> int:
    delta = as_utc(moment) - datetime(1970, 1, 1, tzinfo=as_utc(moment).tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def prediction_rows(session: Session, lake_root: str, model: str, start: datetime, end: datetime,
                    site: str | None) -> pa.Table:
    """The model's logged predictions made in ``[start, end)`` (at ``site``), from the database and
    the archive; a prediction in both (a crash while archiving) counts once."""
    model_row = session.scalar(select(ModelRow).where(ModelRow.name == model))
    if model_row is None:
        return PREDICTION_COLUMNS.empty_table()
    numbers = {row[0]: row[1] for row in session.execute(
        select(ModelVersionRow.id, ModelVersionRow.number).where(ModelVersionRow.model_id == model_row.id))}
    query = select(PredictionRow.id, PredictionRow.at, PredictionRow.version_id, PredictionRow.site,
                   PredictionRow.mode, PredictionRow.score, PredictionRow.decision, PredictionRow.features_json,
                   PredictionRow.latency_ms, PredictionRow.patient_key).where(
        PredictionRow.model_id == model_row.id, PredictionRow.at >= as_utc(start), PredictionRow.at < as_utc(end))
    if site is not None:
        query = query.where(PredictionRow.site == site)
    rows = session.execute(query).all()
    logged = pa.table({
        "prediction_id": pa.array([r[0] for r in rows], pa.string()),
        "at": pa.array([as_utc(r[1]) for r in rows], _TS),
        "version": pa.array([numbers[r[2]] for r in rows], pa.int64()),
        "site": pa.array([r[3] for r in rows], pa.string()),
        "mode": pa.array([r[4] for r in rows], pa.string()),
        "score": pa.array([r[5] for r in rows], pa.float64()),
        "decision": pa.array([r[6] for r in rows], pa.bool_()),
        "features": pa.array([orjson.loads(r[7]) for r in rows], pa.list_(pa.float64())),
        "latency_ms": pa.array([r[8] for r in rows], pa.float64()),
        "patient_key": pa.array([r[9] for r in rows], pa.string()),
    }, schema=PREDICTION_COLUMNS)
    archive = PredictionArchive(lake_root)
    if not archive.exists():
        return logged
    where = (pc.field("model") == model) & (pc.field("at") >= pa.scalar(as_utc(start), _TS)) \
        & (pc.field("at") < pa.scalar(as_utc(end), _TS))
    if site is not None:
        where = where & (pc.field("site") == site)
    archived = archive.dataset().to_table(columns=PREDICTION_COLUMNS.names, filter=where).cast(PREDICTION_COLUMNS)
    if logged.num_rows:
        archived = archived.filter(pc.invert(pc.is_in(archived["prediction_id"], value_set=logged["prediction_id"])))
    return pa.concat_tables([logged, archived])


def first_prediction_at(session: Session, lake_root: str, model: str) -> datetime | None:
    """When the model's earliest logged prediction (database or archive) was made."""
    from sqlalchemy import func

    first = session.scalar(select(func.min(PredictionRow.at)).join(ModelRow, ModelRow.id == PredictionRow.model_id)
                           .where(ModelRow.name == model))
    moments = [as_utc(first)] if first is not None else []
    archive = PredictionArchive(lake_root)
    if archive.exists():
        at = archive.dataset().to_table(columns=["at"], filter=pc.field("model") == model)["at"]
        if len(at):
            moments.append(as_utc(pc.min(at).as_py()))
    return min(moments) if moments else None


@dataclass
class WindowAggregates:
    """Per (version, site, window): each feature's Distribution, the scores' Distribution, counts,
    flags and latency quantiles; labelled rows for the windows whose outcomes are known."""

    feature_names: dict[int, list[str]]
    features: dict[Key, dict[str, Distribution]] = field(default_factory=dict)
    scores: dict[Key, Distribution] = field(default_factory=dict)
    volume: dict[Key, int] = field(default_factory=dict)
    flagged: dict[Key, int] = field(default_factory=dict)
    latency: dict[Key, tuple[int, float | None, float | None, float | None]] = field(default_factory=dict)
    modes: dict[Key, list[str]] = field(default_factory=dict)
    #: Distinct patients per key (a row without a patient key counts as its own patient).
    patients: dict[Key, int] = field(default_factory=dict)


def distinct_patients(predictions: pa.Table, window_us: int) -> dict[Key, int]:
    """Per (version, site, window): the distinct patient keys of the rows, each row without a key
    counted as a patient of its own. Read in this process (patient keys never go to the cluster)."""
    if predictions.num_rows == 0:
        return {}
    at = pc.cast(predictions["at"], pa.int64()).to_numpy(zero_copy_only=False)
    seen: dict[Key, set[str]] = defaultdict(set)
    columns = zip(predictions["version"].to_pylist(), predictions["site"].to_pylist(),
                  predictions["patient_key"].to_pylist(), predictions["prediction_id"].to_pylist(), at, strict=True)
    for version, site, patient_key, prediction_id, moment in columns:
        seen[(int(version), str(site), int(moment) // window_us * window_us)].add(
            patient_key if patient_key is not None else f"row:{prediction_id}")
    return {key: len(keys) for key, keys in seen.items()}


#: The aggregates of a set of predictions, each an Arrow table with a count column ``n`` (and
#: ``flagged`` for volume): sums over partitions give the aggregates of their union exactly.
_PARTIAL_KEYS = {
    "values": ("version", "site", "w", "position", "value"),
    "scores": ("version", "site", "w", "score"),
    "latency": ("version", "site", "w", "latency_ms"),
    "volume": ("version", "site", "w", "mode"),
}
ENGINES = ("local", "dask")
ROWS_PER_PARTITION = 250_000


def partial_aggregates(predictions: pa.Table, window_us: int) -> dict[str, pa.Table]:
    """Value counts of every feature, of the scores and of the latencies, and volume and flags per
    mode, per (version, site, window), of ``predictions`` (without patient keys)."""

    connection = duck.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("p", predictions.select([c for c in PREDICTION_COLUMNS.names if c != "patient_key"]))
        bucket = f'(epoch_us("at") - epoch_us("at") % {int(window_us)})'
        return {
            # value counts grouped on a small integer id of (version, site, window): hashing three
            # numbers per value is several times faster than hashing the string site with them
            "values": connection.sql(f"""
                WITH g AS (SELECT version, site, w, (row_number() OVER ())::INTEGER AS gid
                           FROM (SELECT DISTINCT version, site, {bucket} AS w FROM p)),
                q AS (SELECT g.gid, p.features FROM p JOIN g ON p.version = g.version AND p.site = g.site
                      AND {bucket.replace('"at"', 'p."at"')} = g.w),
                c AS (SELECT gid, position, value, count(*) AS n FROM (
                          SELECT gid, unnest(features) AS value, unnest(generate_series(1, len(features))) AS position
                          FROM q) GROUP BY ALL)
                SELECT g.version, g.site, g.w, c.position, c.value, c.n FROM c JOIN g USING (gid)""").to_arrow_table(),
            "scores": connection.sql(f"SELECT version, site, {bucket} AS w, score, count(*) AS n FROM p GROUP BY ALL"
                                     ).to_arrow_table(),
            "latency": connection.sql(f"""SELECT version, site, {bucket} AS w, latency_ms, count(*) AS n FROM p
                                         WHERE latency_ms IS NOT NULL GROUP BY ALL""").to_arrow_table(),
            "volume": connection.sql(f"""SELECT version, site, {bucket} AS w, mode, count(*) AS n,
                                        count(*) FILTER (WHERE decision) AS flagged FROM p GROUP BY ALL"""
                                     ).to_arrow_table(),
        }
    finally:
        connection.close()


def combine(parts: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    """The partial aggregates of several partitions summed into those of their union, sorted by key."""

    combined: dict[str, pa.Table] = {}
    connection = duck.connect()
    try:
        for kind, keys in _PARTIAL_KEYS.items():
            connection.register("part", pa.concat_tables([part[kind] for part in parts]))
            # sorted by the group keys only (version, site, window and, for values, the feature's position)
            order = ", ".join(key for key in keys[:-1] if key != "mode") if kind != "volume" else "version, site, w"
            if len(parts) == 1:
                query = f"SELECT * FROM part ORDER BY {order}"
            else:
                sums = "sum(n)::BIGINT AS n" + (", sum(flagged)::BIGINT AS flagged" if kind == "volume" else "")
                query = f"SELECT {', '.join(keys)}, {sums} FROM part GROUP BY ALL ORDER BY {order}"
            combined[kind] = connection.sql(query).to_arrow_table()
            connection.unregister("part")
    finally:
        connection.close()
    return combined


def _partials(predictions: pa.Table, window_us: int, engine: str, scheduler: str | None,
              partitions: int | None) -> list[dict[str, pa.Table]]:
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}", details={"field": "engine"})
    # in this process one partition is fastest; on a cluster, partitions of ROWS_PER_PARTITION rows
    count = partitions or (1 if engine == "local" else max(1, -(-predictions.num_rows // ROWS_PER_PARTITION)))
    size = max(1, -(-predictions.num_rows // count))
    parts = [predictions.slice(offset, size).drop_columns(["patient_key"])
             for offset in range(0, predictions.num_rows, size)]
    if engine == "local":
        return [partial_aggregates(part, window_us) for part in parts]
    if not scheduler:
        raise InvalidInput("the dask engine needs the cluster's scheduler address", details={"field": "scheduler"})
    distributed = import_extra("distributed")
    with distributed.Client(scheduler, set_as_default=False) as client:
        futures = [client.submit(partial_aggregates, part, window_us, pure=False) for part in parts]
        return list(client.gather(futures))


def aggregate_predictions(predictions: pa.Table, window_us: int, feature_names: dict[int, list[str]], *,
                          engine: str = "local", scheduler: str | None = None, partitions: int | None = None
                          ) -> WindowAggregates:
    """The window aggregates of ``predictions`` (``PREDICTION_COLUMNS``): partial aggregates per
    partition, in this process or on a Dask cluster (``engine="dask"``, ``scheduler``), summed. The
    sums are exact, so both engines give the same aggregates."""
    result = WindowAggregates(feature_names)
    if predictions.num_rows == 0:
        return result
    tables = combine(_partials(predictions, window_us, engine, scheduler, partitions))
    modes: dict[Key, list[str]] = defaultdict(list)
    for version, site, start, mode, n, flagged in zip(*(tables["volume"][c].to_pylist() for c in (
            "version", "site", "w", "mode", "n", "flagged")), strict=True):
        key = (int(version), str(site), int(start))
        result.volume[key] = result.volume.get(key, 0) + int(n)
        result.flagged[key] = result.flagged.get(key, 0) + int(flagged)
        modes[key].append(str(mode))
    result.modes = {key: sorted(value) for key, value in modes.items()}
    latencies = {key: Distribution.from_counts(values, counts) for key, values, counts in _groups(
        tables["latency"], "latency_ms")}
    for key in result.volume:
        latency = latencies.get(key)
        if latency is None or latency.n == 0:
            result.latency[key] = (0, None, None, None)
        else:  # numpy's (and DuckDB's quantile_cont) linear interpolation, on the value counts
            p50, p95, p99 = (float(v) for v in latency.quantiles([0.5, 0.95, 0.99]))
            result.latency[key] = (latency.n, p50, p95, p99)
    for key, values, counts in _groups(tables["scores"], "score"):
        result.scores[key] = Distribution.from_counts(values, counts)
    _feature_distributions(tables["values"], result)
    return result


def _groups(table: pa.Table, value: str, extra: tuple[str, ...] = ()) -> Any:
    """(key, values, counts) per run of equal (version, site, w, *extra) in a sorted aggregate."""
    if table.num_rows == 0:
        return
    names = ("version", "site", "w", *extra)
    codes = [np.asarray(pc.dictionary_encode(table[name].combine_chunks()).indices) if name == "site"
             else table[name].to_numpy(zero_copy_only=False) for name in names]
    change = np.zeros(table.num_rows, dtype=bool)
    change[0] = True
    for code in codes:
        change[1:] |= code[1:] != code[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], table.num_rows)
    sites = table["site"].to_pylist()
    values = table[value].to_numpy(zero_copy_only=False)
    counts = table["n"].to_numpy(zero_copy_only=False).astype(np.float64)
    for first, last in zip(starts.tolist(), ends.tolist(), strict=True):
        key = (int(codes[0][first]), str(sites[first]), int(codes[2][first]), *(code[first] for code in codes[3:]))
        yield key, values[first:last], counts[first:last]


def _feature_distributions(table: pa.Table, result: WindowAggregates) -> None:
    grouped: dict[Key, dict[str, Distribution]] = defaultdict(dict)
    for (version, site, start, position), values, counts in _groups(table, "value", ("position",)):
        names = result.feature_names.get(version, [])
        if not 1 <= int(position) <= len(names):
            continue
        present = ~np.isnan(values.astype(np.float64))  # nulls arrive as NaN in numpy
        grouped[(version, site, start)][names[int(position) - 1]] = Distribution.from_counts(
            values[present], counts[present], int(counts[~present].sum()))
    result.features.update(grouped)


@dataclass
class Labelled:
    scores: np.ndarray
    outcomes: np.ndarray
    decisions_threshold: float
    patient_keys: np.ndarray


def posted_outcomes(session: Session, predictions: pa.Table) -> dict[str, tuple[datetime, int]]:
    """Per prediction id: (recorded at, outcome) of the outcomes recorded through ``/v1/outcomes``
    for ``predictions`` (when sources disagree, the most recently recorded)."""
    ids = predictions["prediction_id"].to_pylist()
    outcomes: dict[str, tuple[datetime, int]] = {}
    for chunk in range(0, len(ids), 5000):
        for prediction_id, outcome, recorded_at in session.execute(
                select(OutcomeRow.prediction_id, OutcomeRow.outcome, OutcomeRow.recorded_at)
                .where(OutcomeRow.prediction_id.in_(ids[chunk:chunk + 5000]))).all():
            known = outcomes.get(prediction_id)
            if known is None or as_utc(recorded_at) > known[0]:
                outcomes[prediction_id] = (as_utc(recorded_at), int(outcome))
    return outcomes


def merge_outcomes(*sources: dict[str, tuple[datetime, int]]) -> dict[str, tuple[datetime, int]]:
    """One outcome per prediction from several sources: where they disagree, the most recently known."""
    merged: dict[str, tuple[datetime, int]] = {}
    for source in sources:
        for prediction_id, (known_at, outcome) in source.items():
            held = merged.get(prediction_id)
            if held is None or known_at > held[0]:
                merged[prediction_id] = (known_at, outcome)
    return merged


def labelled_predictions(predictions: pa.Table, window_us: int, thresholds: dict[int, float],
                         outcomes: dict[str, tuple[datetime, int]]) -> dict[Key, Labelled]:
    """Per (version, site, window): the scores and observed outcomes of the predictions that have
    one in ``outcomes`` (``posted_outcomes`` merged with the lake's labels)."""
    if predictions.num_rows == 0 or not outcomes:
        return {}
    grouped: dict[Key, list[tuple[float, int, str]]] = defaultdict(list)
    at = pc.cast(predictions["at"], pa.int64()).to_numpy(zero_copy_only=False)
    columns = zip(predictions["prediction_id"].to_pylist(), predictions["version"].to_pylist(),
                  predictions["site"].to_pylist(), predictions["score"].to_pylist(),
                  predictions["patient_key"].to_pylist(), at, strict=True)
    for prediction_id, version, site, score, patient_key, moment in columns:
        if prediction_id in outcomes:
            key = (int(version), str(site), int(moment) // window_us * window_us)
            grouped[key].append((float(score), outcomes[prediction_id][1], patient_key or prediction_id))
    return {key: Labelled(np.asarray([r[0] for r in rows]), np.asarray([r[1] for r in rows], dtype=np.int64),
                          thresholds[key[0]], np.asarray([r[2] for r in rows], dtype=object))
            for key, rows in grouped.items()}


def feedback_counts(session: Session, predictions: pa.Table, window_us: int) -> dict[Key, tuple[int, int]]:
    """Per (version, site, window of the prediction): (feedback items, overrides) of CDS cards that
    showed these predictions."""
    if predictions.num_rows == 0:
        return {}
    ids = predictions["prediction_id"].to_pylist()
    at = pc.cast(predictions["at"], pa.int64()).to_numpy(zero_copy_only=False)
    owner = {prediction_id: (int(version), str(site), int(moment) // window_us * window_us)
             for prediction_id, version, site, moment in zip(ids, predictions["version"].to_pylist(),
                                                             predictions["site"].to_pylist(), at, strict=True)}
    counts: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    for chunk in range(0, len(ids), 5000):
        for prediction_id, outcome in session.execute(
                select(CardFeedbackRow.prediction_id, CardFeedbackRow.outcome)
                .where(CardFeedbackRow.prediction_id.in_(ids[chunk:chunk + 5000]))).all():
            key = owner[prediction_id]
            counts[key][0] += 1
            counts[key][1] += outcome == "overridden"
    return {key: (value[0], value[1]) for key, value in counts.items()}


@dataclass
class QualityAggregates:
    """Per (site, window, concept): (numeric facts, outside the plausible range) and (facts with a
    unit, in a source unit other than the canonical one, when the facts record it); per site, the
    latest ``known_at`` (us) in each window, for freshness."""

    ranges: dict[tuple[str, int, str], tuple[int, int]] = field(default_factory=dict)
    units: dict[tuple[str, int, str], tuple[int, int]] = field(default_factory=dict)
    latest_known: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    records_source_unit: bool = False


def aggregate_quality(lake_root: str, sites: list[str], start: datetime, end: datetime, window_us: int
                      ) -> QualityAggregates:
    """The facts of ``sites`` effective in ``[start, end)``, reduced per window and concept."""

    from vitalops.lake.facts import FactsStore
    from vitalops.terminology import load_terminology

    result = QualityAggregates()
    if not sites:
        return result
    dataset = FactsStore(lake_root).dataset()
    result.records_source_unit = "source_unit" in dataset.schema.names
    site_list = pa.array(sites, pa.string())
    connection = duck.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        columns = ["site", "concept", "value_num", "unit", "effective_at"]
        columns += ["source_unit"] if result.records_source_unit else []
        in_sites = pc.field("site").isin(site_list)
        in_range = (pc.field("effective_at") >= pa.scalar(as_utc(start), _TS)) \
            & (pc.field("effective_at") < pa.scalar(as_utc(end), _TS))
        connection.register("facts", dataset.to_table(columns=columns, filter=in_sites & in_range))
        known = dataset.to_table(columns=["site", "known_at"],
                                 filter=in_sites & (pc.field("known_at") < pa.scalar(as_utc(end), _TS)))
        connection.register("known", known)
        bounds = [(c.name, c.plausible_low, c.plausible_high) for c in load_terminology().concepts()
                  if c.plausible_low is not None or c.plausible_high is not None]
        connection.execute("CREATE TEMP TABLE bounds (concept VARCHAR, low DOUBLE, high DOUBLE)")
        if bounds:
            connection.executemany("INSERT INTO bounds VALUES (?, ?, ?)", bounds)
        bucket = f"(epoch_us(effective_at) - epoch_us(effective_at) % {int(window_us)})"
        window = {"start": epoch_us(start), "end": epoch_us(end)}
        for site, w, concept, n, outside in connection.execute(f"""
            SELECT site, {bucket} AS w, f.concept, count(*),
                   count(*) FILTER (WHERE value_num < coalesce(low, -'inf'::DOUBLE)
                                       OR value_num > coalesce(high, 'inf'::DOUBLE))
            FROM facts f JOIN bounds b ON f.concept = b.concept
            WHERE value_num IS NOT NULL AND epoch_us(effective_at) >= $start AND epoch_us(effective_at) < $end
            GROUP BY ALL""", window).fetchall():
            result.ranges[(str(site), int(w), str(concept))] = (int(n), int(outside))
        if result.records_source_unit:
            for site, w, concept, n, other in connection.execute(f"""
                SELECT site, {bucket} AS w, concept, count(*),
                       count(*) FILTER (WHERE source_unit <> unit)
                FROM facts WHERE unit IS NOT NULL AND concept IS NOT NULL
                  -- a fact without a recorded source unit (a lake from before it was recorded, a
                  -- free-text unit) is counted as neither canonical nor other
                  AND source_unit IS NOT NULL
                  AND epoch_us(effective_at) >= $start AND epoch_us(effective_at) < $end
                GROUP BY ALL""", window).fetchall():
                result.units[(str(site), int(w), str(concept))] = (int(n), int(other))
        known = f"(epoch_us(known_at) - epoch_us(known_at) % {int(window_us)})"
        for site, w, latest in connection.execute(f"""
            SELECT site, {known} AS w, max(epoch_us(known_at)) FROM known GROUP BY ALL ORDER BY site, w""").fetchall():
            result.latest_known.setdefault(str(site), []).append((int(w), int(latest)))
    finally:
        connection.close()
    return result
