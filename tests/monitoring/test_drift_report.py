"""monitoring.drift_report: a report over a table equals the report over the same rows streamed in
batches or counted per partition on Dask; shifted columns are flagged and unshifted ones are not;
what it does with too little data and with a column the current data lacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vitalops.monitoring.drift_report import (
    DriftReport,
    drift_report,
    judge,
    reference_of,
    stream_value_counts,
    value_counts_on_dask,
)
from vitalops.monitoring.metrics import MIN_ROWS_DRIFT
from vitalops.monitoring.stats import Distribution

COLUMNS = ["heart_rate", "creatinine", "triage_esi", "diabetes"]
SHIFTED = {"heart_rate", "triage_esi"}
TRIAGE_SHARES = [0.05, 0.25, 0.45, 0.20, 0.05]
#: ESI 2 and 3 trade places in share: Jensen-Shannon 0.13, over Evidently's 0.1 as well as our rule's bounds.
TRIAGE_SHARES_SHIFTED = [0.10, 0.38, 0.35, 0.13, 0.04]


def _encounters(rows: int, seed: int, *, shifted: bool) -> pa.Table:
    """Rows as a feed sends them: heart rate charted at whole beats, creatinine at 0.01 mg/dL with a
    dialysis tail and a third missing, ESI triage level 1-5, a diabetes flag; ``shifted`` raises
    heart rate by 8/min and moves triage shares, and leaves creatinine and diabetes alone."""
    rng = np.random.default_rng(seed)
    heart_rate = np.round(rng.normal(85.0 + (8.0 if shifted else 0.0), 15.0, rows))
    creatinine = np.where(rng.random(rows) < 0.03, rng.uniform(4.0, 12.0, rows), rng.lognormal(0.0, 0.3, rows))
    creatinine = np.where(rng.random(rows) < 0.35, np.nan, np.round(creatinine, 2))
    shares = np.asarray(TRIAGE_SHARES_SHIFTED if shifted else TRIAGE_SHARES)
    triage = rng.choice(5, size=rows, p=shares / shares.sum()).astype(np.float64) + 1.0
    diabetes = (rng.random(rows) < 0.22).astype(np.float64)
    return pa.table({"heart_rate": heart_rate, "creatinine": creatinine, "triage_esi": triage,
                     "diabetes": diabetes})


def _partition(index: int) -> pa.Table:
    """The ``index``-th current partition, made where it is counted."""
    return _encounters(700, 100 + index, shifted=True)


def _comparable(report: DriftReport) -> dict[str, Any]:
    """Everything a report states, as plain values (verdicts through their JSON form)."""
    columns = {name: (c.categorical, c.reference_rows, c.current_rows, c.reference_missing_rate,
                      c.current_missing_rate, c.vitalops and c.vitalops.to_dict(),
                      c.evidently and c.evidently.to_dict())
               for name, c in report.columns.items()}
    return {"columns": columns, "aggregate_points": report.aggregate_points}


def _same_counts(a: dict[str, Distribution], b: dict[str, Distribution]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].values.tolist() == b[name].values.tolist(), name
        assert a[name].counts.tolist() == b[name].counts.tolist(), name
        assert a[name].missing == b[name].missing, name


def test_a_report_over_streamed_batches_equals_the_report_over_the_table(tmp_path: Path) -> None:
    reference, current = _encounters(5000, 1, shifted=False), _encounters(3000, 2, shifted=True)
    whole = drift_report(reference, current, COLUMNS)
    pq.write_table(current, tmp_path / "current.parquet", row_group_size=400)

    def current_batches() -> Iterator[pa.RecordBatch]:  # read once, as a Parquet stream is
        yield from pq.ParquetFile(tmp_path / "current.parquet").iter_batches(batch_size=250)

    # 52 reference batches: past the 16 at which the stream merges what it holds, more than once
    streamed = drift_report(reference.to_batches(max_chunksize=97), current_batches(), COLUMNS)
    assert _comparable(streamed) == _comparable(whole)
    _same_counts(stream_value_counts(current_batches(), COLUMNS, merge_every=3),
                 stream_value_counts(current, COLUMNS))
    # the report is about these rows, not an empty agreement
    column = whole.columns["creatinine"]
    assert column.reference_rows == 5000 and column.current_rows == 3000
    assert 0.3 < column.current_missing_rate < 0.4
    assert all(c.vitalops is not None and c.evidently is not None for c in whole.columns.values())


def test_value_counts_on_dask_equal_the_local_counts_and_give_the_same_report() -> None:
    reference = _encounters(5000, 1, shifted=False)
    parts = range(5)
    local_counts = stream_value_counts([_partition(i) for i in parts], COLUMNS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        on_dask = value_counts_on_dask(client, _partition, parts, COLUMNS)
    _same_counts(on_dask, local_counts)
    assert on_dask["heart_rate"].n == 3500
    report = judge(reference_of(stream_value_counts(reference, COLUMNS)), on_dask)
    local = drift_report(reference, pa.concat_tables([_partition(i) for i in parts]), COLUMNS)
    assert _comparable(report) == _comparable(local)
    assert set(report.flagged()) == SHIFTED


def test_shifted_columns_are_flagged_and_unshifted_ones_are_not() -> None:
    reference = _encounters(5000, 1, shifted=False)
    report = drift_report(reference, _encounters(3000, 2, shifted=True), COLUMNS)
    assert set(report.flagged("vitalops")) == SHIFTED
    assert set(report.flagged("evidently")) == SHIFTED
    heart_rate, triage = report.columns["heart_rate"], report.columns["triage_esi"]
    assert not heart_rate.categorical and triage.categorical and report.columns["diabetes"].categorical
    assert heart_rate.vitalops is not None and heart_rate.vitalops.test == "ks"
    assert heart_rate.evidently is not None and heart_rate.evidently.test == "wasserstein_normed"
    assert triage.vitalops is not None and triage.vitalops.test == "chi2_contingency"
    assert triage.evidently is not None and triage.evidently.test == "jensenshannon"
    # the same population again: nothing drifts under either rule
    calm = drift_report(reference, _encounters(3000, 3, shifted=False), COLUMNS)
    assert calm.flagged("vitalops") == [] and calm.flagged("evidently") == []
    assert all(c.vitalops is not None for c in calm.columns.values())


def test_too_few_current_values_or_an_empty_reference_give_no_verdict() -> None:
    reference = _encounters(5000, 1, shifted=False)
    # far shifted, but under MIN_ROWS_DRIFT values: not judged rather than judged on noise
    few = _encounters(MIN_ROWS_DRIFT - 1, 2, shifted=True)
    report = drift_report(reference, few, COLUMNS)
    assert report.flagged("vitalops") == [] and report.flagged("evidently") == []
    assert all(c.vitalops is None and c.evidently is None for c in report.columns.values())
    assert report.columns["heart_rate"].current_rows == MIN_ROWS_DRIFT - 1
    enough = drift_report(reference, _encounters(MIN_ROWS_DRIFT, 2, shifted=True), COLUMNS)
    assert enough.columns["heart_rate"].vitalops is not None
    # a reference with no rows has nothing to compare against
    empty = drift_report(reference.slice(0, 0), _encounters(3000, 2, shifted=True), COLUMNS)
    assert empty.flagged("vitalops") == [] and empty.flagged("evidently") == []
    assert all(c.reference_rows == 0 and c.vitalops is None and c.evidently is None
               for c in empty.columns.values())
    assert empty.columns["heart_rate"].current_rows == 3000


def test_a_column_missing_from_the_current_data_is_an_error_naming_it() -> None:
    reference = _encounters(1000, 1, shifted=False)
    current = _encounters(1000, 2, shifted=False).drop_columns(["creatinine"])
    with pytest.raises(KeyError, match="creatinine"):
        drift_report(reference, current, COLUMNS)
