"""The batch scoring kernel: one partition of rows, routed per site and scored by each version.

A partition is a table of rows (``patient_key``, ``site``, ``index_time``, the feature columns)
and a plan (each site's deployments and the versions they name, with their predictors). The kernel
routes every patient with ``serving.routing.route`` (the rule online requests follow, so a patient
is on the same side of a canary in a batch as at the bedside), scores each version over the rows
routed to it, and returns one scored row per (row, assignment): the served one first.

The kernel is a plain function of its task, so the local engine and a Dask worker run the same
code on the same partitions and give the same table. Scores do not depend on which other rows
share the partition (the predictors are row-invariant), so a batch row equals the same row scored
alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.artifacts import Predictor
from vitalops.errors import InvalidInput
from vitalops.serving.routing import Assignment, SiteDeployments, route

SCORED_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),  # the input row's position
        pa.field("rank", pa.int8(), nullable=False),  # 0 served, 1 the unserved side (shadow or champion)
        pa.field("version_id", pa.int64(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("deployment_event_id", pa.int64(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("served", pa.bool_(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
        pa.field("decision", pa.bool_(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ScoringVersion:
    """What the kernel needs of a version: its predictor, operating threshold and band limits."""

    version_id: int
    number: int
    artifact_sha256: str
    definitions_version: str | None
    threshold: float
    moderate: float
    high: float
    predictor: Predictor

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.predictor.feature_names


@dataclass(frozen=True)
class ScoringPlan:
    """Who scores at each site (the deployments as read once for the whole run) and the versions."""

    model: str
    sites: dict[str, SiteDeployments]
    versions: dict[int, ScoringVersion]


def feature_matrix(rows: pa.Table, names: tuple[str, ...]) -> np.ndarray:
    """The float64 matrix of ``names`` (NaN for null), the form every predictor scores."""
    missing = [name for name in names if name not in rows.column_names]
    if missing:
        raise InvalidInput(f"the input lacks feature columns: {', '.join(missing[:5])}",
                           details={"field": missing[0], "missing": missing})
    if not names:
        return np.empty((rows.num_rows, 0))
    return np.column_stack(
        [pc.cast(rows.column(name), pa.float64()).to_numpy(zero_copy_only=False) for name in names]
    ).astype(np.float64, copy=False)


BANDS = ("low", "moderate", "high")
_BAND_NAMES = pa.array(BANDS, pa.string())


def band_codes(scores: np.ndarray, version: ScoringVersion) -> np.ndarray:
    """Each score's band as an index into BANDS, as ``LoadedVersion.band_of`` gives it."""
    return np.where(scores >= version.high, 2, np.where(scores >= version.moderate, 1, 0)).astype(np.int8)


def _patterns(deployments: SiteDeployments, keys: pa.ChunkedArray, *, model: str, site: str
              ) -> tuple[np.ndarray, list[list[Assignment]]]:
    """Each row's routing pattern (an index into the returned list of assignment lists), routing
    each distinct patient once. Only a canary or A/B share depends on the patient key."""
    challenger = deployments.challenger
    if challenger is None or challenger[3] == "shadow":
        return np.zeros(len(keys), dtype=np.int64), [route(deployments, None, name=model, site=site)]
    encoded = pc.dictionary_encode(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys)
    found: dict[tuple[Assignment, ...], int] = {}
    patterns: list[list[Assignment]] = []
    per_key = np.empty(len(encoded.dictionary) + 1, dtype=np.int64)
    for position, key in enumerate([*encoded.dictionary.to_pylist(), None]):
        assignments = route(deployments, key, name=model, site=site)
        code = found.setdefault(tuple(assignments), len(patterns))
        if code == len(patterns):
            patterns.append(assignments)
        per_key[position] = code
    # a null key (a row without a patient) takes the last slot: the champion serves it
    indices = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    return per_key[indices], patterns


def score_partition(plan: ScoringPlan, rows: pa.Table) -> pa.Table:
    """The scored rows (SCORED_SCHEMA) of one partition of ``rows`` (``row``, its position in the
    whole input, ``patient_key``, ``site`` and the feature columns), sorted by input row, the
    served one first.

    Raises Conflict (from routing) when a row's site has no champion, InvalidInput when a feature
    column a version needs is absent.
    """
    if rows.num_rows == 0:
        return SCORED_SCHEMA.empty_table()
    sites = pc.dictionary_encode(rows.column("site").combine_chunks())
    site_of_row = sites.indices.to_numpy(zero_copy_only=False)
    keys = rows.column("patient_key")
    # (rows selected, or None for all, rank, assignment) for every scoring the partition needs
    work: list[tuple[np.ndarray | None, int, Assignment]] = []
    for code, site in enumerate(sites.dictionary.to_pylist()):
        at_site = None if len(sites.dictionary) == 1 else np.nonzero(site_of_row == code)[0]
        site_keys = keys if at_site is None else keys.take(pa.array(at_site))
        patterns, assignments_of = _patterns(plan.sites[site], site_keys, model=plan.model, site=site)
        for pattern, assignments in enumerate(assignments_of):
            selected = at_site
            if len(assignments_of) > 1:
                chosen = np.nonzero(patterns == pattern)[0]
                selected = chosen if at_site is None else at_site[chosen]
            work.extend((selected, rank, assignment) for rank, assignment in enumerate(assignments))
    positions = rows.column("row").to_numpy()
    matrices: dict[int, np.ndarray] = {}
    modes = sorted({assignment.mode for _, _, assignment in work})
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SCORED_SCHEMA.names}
    for selected, rank, assignment in work:
        version = plan.versions[assignment.version_id]
        matrix = matrices.get(version.version_id)
        if matrix is None:
            matrix = matrices[version.version_id] = feature_matrix(rows, version.feature_names)
        scores = version.predictor.predict_proba(matrix if selected is None else matrix[selected])
        count = len(scores)
        parts["row"].append(positions if selected is None else positions[selected])
        parts["rank"].append(np.full(count, rank, dtype=np.int8))
        parts["version_id"].append(np.full(count, version.version_id, dtype=np.int64))
        parts["version"].append(np.full(count, version.number, dtype=np.int64))
        parts["deployment_event_id"].append(np.full(count, assignment.deployment_event_id, dtype=np.int64))
        parts["mode"].append(np.full(count, modes.index(assignment.mode), dtype=np.int8))
        parts["served"].append(np.full(count, assignment.served))
        parts["score"].append(scores)
        parts["band"].append(band_codes(scores, version))
        parts["decision"].append(scores >= version.threshold)
        parts["threshold"].append(np.full(count, version.threshold, dtype=np.float64))
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    order = np.lexsort((columns["rank"], columns["row"]))
    if not np.array_equal(order, np.arange(len(order))):
        columns = {name: values[order] for name, values in columns.items()}
    table = {name: pa.array(values) for name, values in columns.items()}
    table["mode"] = pa.array(modes, pa.string()).take(table["mode"])
    table["band"] = _BAND_NAMES.take(table["band"])
    return pa.table(table, schema=SCORED_SCHEMA)
