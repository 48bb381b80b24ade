"""Per-site variance: for each metric measured at several sites in a window, how far each site lies
from the others, stored as ``sites.outlier/<metric id>`` per site (the flagged one is the outlier).

The rule, a leave-one-out robust z-score: a site's value against the median of the *other* sites,
in units of the others' spread, 1.4826 times their median absolute deviation (the standard
deviation of a normal distribution). Why this rule:

- *Leave one out.* The outlier must not widen the yardstick it is measured by. Over all sites, an
  ordinary z-score of n sites can never exceed (n - 1) / sqrt(n): 1.15 with three sites, 1.5 with
  four, so a z-score over all sites could not name an outlier at the site counts hospitals have.
- *Median and MAD.* Among the others, one more odd site (two sites failing at once) moves neither.
- *A floor under the spread.* Sites that agree closely (or exactly) would make any difference
  infinite; the spread is at least 10% of the others' median and, for a fraction (a rate), the
  binomial standard error sqrt(m (1 - m) / n) of the site's own sample at the others' median m
  (m kept within [0.5/n, 1 - 0.5/n]), so a site is not called out for what its own sample size
  explains.
- *The cut-off 3.5* is Iglewicz and Hoaglin's for the modified z-score (1993).

Only results with a value count (``insufficient_data`` sites are left out). At least 3 sites
with a value are needed (2 others to take a median of); with 2, each site's row is
``insufficient_data``; with one, nothing is written. ``ops.volume`` (a site's size, not its
behaviour) is not judged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from statistics import median

from vitalops.monitoring.metrics import MIN_SITES_OUTLIER, SITES_OUTLIER, get_metric
from vitalops.monitoring.results import MetricResult

OUTLIER_Z = 3.5
MAD_TO_SD = 1.4826
RELATIVE_FLOOR = 0.1
NOT_JUDGED = frozenset({"ops.volume", SITES_OUTLIER})


def robust_z(value: float, others: list[float], *, fraction: bool, n: int) -> tuple[float | None, dict[str, float]]:
    """(z, figures) of ``value`` against ``others`` by the rule above; z is None when the spread is 0."""
    center = median(others)
    mad = median(abs(other - center) for other in others)
    floor = RELATIVE_FLOOR * abs(center)
    if fraction and n > 0:
        share = min(max(center, 0.5 / n), 1 - 0.5 / n)
        floor = max(floor, math.sqrt(share * (1 - share) / n))
    spread = max(MAD_TO_SD * mad, floor)
    figures = {"others_median": center, "others_mad": mad, "spread": spread, "spread_floor": floor}
    return ((value - center) / spread if spread > 0 else None), figures


def site_outliers(add: Callable[..., None], results: list[MetricResult]) -> None:
    """Write ``sites.outlier/<id>`` for every (metric id, version) of ``results`` (one window) with a
    value at two sites or more, through the engine's writer ``add``."""
    measured: dict[tuple[str, int], list[MetricResult]] = defaultdict(list)
    for result in results:
        if result.value is not None and result.metric_id.partition("/")[0] not in NOT_JUDGED:
            measured[(result.metric_id, result.version)].append(result)
    for (metric_id, version), at_sites in sorted(measured.items()):
        if len(at_sites) < 2:
            continue
        fraction = get_metric(metric_id).unit == "fraction"
        for result in sorted(at_sites, key=lambda r: r.site):
            assert result.value is not None
            others = [float(r.value) for r in at_sites if r.site != result.site and r.value is not None]
            details = {"metric": metric_id, "site_value": result.value, "other_sites": len(others),
                       "cutoff": OUTLIER_Z, "rule": "leave-one-out median and 1.4826 MAD, floored"}
            if len(at_sites) < MIN_SITES_OUTLIER:
                add(f"{SITES_OUTLIER}/{metric_id}", version, result.site, None, len(at_sites), "insufficient_data",
                    details)
                continue
            z, figures = robust_z(float(result.value), others, fraction=fraction, n=result.n)
            if z is None:
                add(f"{SITES_OUTLIER}/{metric_id}", version, result.site, None, len(at_sites), "insufficient_data",
                    {**details, **figures, "reason": "the other sites agree exactly and give no spread"})
                continue
            add(f"{SITES_OUTLIER}/{metric_id}", version, result.site, z, len(at_sites),
                "flagged" if abs(z) > OUTLIER_Z else "ok", {**details, **figures})
