"""Fairness over time: each subgroup's flag rate, sensitivity and PPV relative to its attribute's
reference group, per version, site and window, with the validation report's small-cell suppression.

Which attributes and which reference group: those of the version's own validation report (its
``subgroups``: sex, age band, race, ethnicity; ``site`` is left out, since every result is per site
already and ``sites.outlier`` compares the sites), with the report's reference group (the one it
named, else its largest shown group) and its ``small_group_min``. The prediction log does not
carry a patient's subgroup, so it is joined here from the lake's demographic facts by the
pseudonymous patient key (the same facts the training set's ``attr_*`` columns come from): sex,
race and ethnicity as currently known (the latest version of the Patient resource), the age at the
prediction's time banded as validation bands it. A prediction without a patient key, or a patient
without that fact, is in group ``unknown``, as in reports. Patient keys and birth dates stay in this
process: results hold ratios, rates and counts of groups only.

Suppression is ``vitalops.validation.suppression.suppress_cells``, applied per (version, site,
window, attribute) to the table each ratio rests on: for the flag rate, the groups' predictions and
flagged predictions; for sensitivity and PPV, the groups' labelled predictions and events (as the
report). A group with a hidden cell gets no value and no count (``insufficient_data``, ``n`` 0,
``suppressed`` in details).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.monitoring import aggregates as agg
from vitalops.monitoring.metrics import MIN_ROWS_PROPORTION, MIN_SUBGROUP_EVENTS
from vitalops.monitoring.stats import VITALOPS_P, chi_square
from vitalops.validation.card import FAIR_RATIO_BOUNDS
from vitalops.validation.fairness import age_band
from vitalops.validation.suppression import suppress_cells, suppression_rule

#: Attributes monitored, and the demographic concept each is read from (age band: from birth).
ATTRIBUTE_CONCEPTS = {"sex": "sex", "age_band": "birth", "race": "race", "ethnicity": "ethnicity"}
UNKNOWN = "unknown"
_US_PER_YEAR = 365.25 * 24 * 3_600_000_000.0
#: A group and attribute joined into one id argument (``age_band.80+``): attributes hold no dot.
SEPARATOR = "."
_NOT_IN_IDS = re.compile(r"[^A-Za-z0-9_.+\-]")


@dataclass(frozen=True)
class SubgroupPlan:
    """What a version's validation report judged: its attributes, reference groups and cell minimum."""

    attributes: tuple[str, ...]
    reference: dict[str, str]
    small_group_min: int


def subgroup_plan(report_json: str) -> SubgroupPlan | None:
    """The monitored attributes of a stored validation report (None when it judged none)."""
    report = orjson.loads(report_json) if report_json else {}
    subgroups = report.get("subgroups") or []
    attributes = tuple(a for a in dict.fromkeys(s.get("attribute") for s in subgroups) if a in ATTRIBUTE_CONCEPTS)
    if not attributes:
        return None
    reference = {s["attribute"]: str(s["reference_group"]) for s in subgroups
                 if s.get("attribute") in attributes and s.get("reference_group") is not None}
    return SubgroupPlan(attributes, reference, int(report.get("small_group_min") or 20))


@dataclass
class GroupCounts:
    """One group's counts in one window: predictions and flagged (logged decision); labelled
    predictions, events among them, events flagged (score at or over the threshold) and flagged."""

    rows: int = 0
    flagged: int = 0
    labelled: int = 0
    events: int = 0
    events_flagged: int = 0
    labelled_flagged: int = 0


@dataclass
class FairnessCounts:
    """Per (version, site, window): per attribute, per group, its counts."""

    plans: dict[int, SubgroupPlan]
    groups: dict[agg.Key, dict[str, dict[str, GroupCounts]]] = field(default_factory=dict)


def demographics(lake_root: str, patient_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Per patient key: its latest known ``sex``, ``race``, ``ethnicity`` codes and its ``birth``
    (epoch us), from the lake's demographic facts (superseded versions removed)."""
    from vitalops.lake.facts import FactsStore, pit_view

    store = FactsStore(lake_root)
    if not patient_keys or not store.exists():
        return {}
    keys = pa.array(sorted(set(patient_keys)), pa.string())
    facts = store.dataset().to_table(filter=pc.field("patient_key").isin(keys) & (pc.field("kind") == "demographic"))
    facts = pit_view(facts)
    known: dict[str, dict[str, tuple[tuple[int, str], Any]]] = defaultdict(dict)
    columns = ("patient_key", "concept", "value_code", "effective_at", "known_at", "fact_id")
    for key, concept, code, effective, known_at, fact_id in zip(*(facts[c].to_pylist() for c in columns), strict=True):
        value = agg.epoch_us(effective) if concept == "birth" else code
        if value is None or concept not in ATTRIBUTE_CONCEPTS.values():
            continue
        order = (agg.epoch_us(known_at), str(fact_id))
        if concept not in known[key] or order > known[key][concept][0]:
            known[key][concept] = (order, value)
    return {key: {concept: value for concept, (_, value) in values.items()} for key, values in known.items()}


def subgroup_labels(lake_root: str, predictions: pa.Table, attributes: set[str]) -> dict[str, np.ndarray]:
    """Per attribute, each prediction's group (``unknown`` without a patient key or the fact)."""
    keys = predictions["patient_key"].to_pylist()
    known = demographics(lake_root, [k for k in keys if k])
    at = pc.cast(predictions["at"], pa.int64()).to_numpy(zero_copy_only=False)
    labels: dict[str, np.ndarray] = {}
    for attribute in sorted(attributes):
        concept = ATTRIBUTE_CONCEPTS[attribute]
        if attribute == "age_band":
            births = np.array([known.get(k, {}).get("birth", np.nan) if k else np.nan for k in keys], dtype=np.float64)
            labels[attribute] = np.asarray(age_band((at - births) / _US_PER_YEAR), dtype=object)
        else:
            labels[attribute] = np.asarray([str(known.get(k, {}).get(concept) or UNKNOWN) if k else UNKNOWN
                                            for k in keys], dtype=object)
    return labels


def fairness_counts(lake_root: str, predictions: pa.Table, window_us: int, plans: dict[int, SubgroupPlan],
                    thresholds: dict[int, float], outcomes: dict[str, tuple[datetime, int]]) -> FairnessCounts:
    """The group counts of every version with a plan; labels joined through ``labelled_predictions``
    from ``outcomes`` (the ones performance uses)."""
    result = FairnessCounts(plans)
    if predictions.num_rows == 0 or not plans:
        return result
    predictions = predictions.filter(pc.is_in(predictions["version"], value_set=pa.array(list(plans), pa.int64())))
    if predictions.num_rows == 0:
        return result
    attributes = {attribute for plan in plans.values() for attribute in plan.attributes}
    labels = subgroup_labels(lake_root, predictions, attributes)
    at = pc.cast(predictions["at"], pa.int64()).to_numpy(zero_copy_only=False)
    windows = at // window_us * window_us
    versions = predictions["version"].to_numpy(zero_copy_only=False)
    sites = np.asarray(predictions["site"].to_pylist(), dtype=object)
    decisions = predictions["decision"].to_numpy(zero_copy_only=False)
    groups: dict[agg.Key, dict[str, dict[str, GroupCounts]]] = defaultdict(lambda: defaultdict(dict))
    for attribute, label in labels.items():
        wanted = np.asarray([attribute in plans[int(v)].attributes for v in versions], dtype=bool)
        for version, site, start, group, flagged in zip(versions[wanted], sites[wanted], windows[wanted],
                                                        label[wanted], decisions[wanted], strict=True):
            counts = groups[(int(version), str(site), int(start))][attribute].setdefault(group, GroupCounts())
            counts.rows += 1
            counts.flagged += bool(flagged)
        for group in sorted(set(label[wanted].tolist())):
            members = pa.array(wanted & (label == group))
            for key, rows in agg.labelled_predictions(predictions.filter(members), window_us, thresholds,
                                                      outcomes).items():
                counts = groups[key][attribute].setdefault(group, GroupCounts())
                flagged_rows = rows.scores >= rows.decisions_threshold
                counts.labelled += int(rows.outcomes.shape[0])
                counts.events += int(rows.outcomes.sum())
                counts.events_flagged += int((flagged_rows & (rows.outcomes == 1)).sum())
                counts.labelled_flagged += int(flagged_rows.sum())
    result.groups = {key: dict(value) for key, value in groups.items()}
    return result


#: family -> (numerator, denominator, cell sizes, cell positives, minimum of the denominator)
_RATIOS: dict[str, tuple[str, str, str, str, int]] = {
    "fairness.flag_rate_ratio": ("flagged", "rows", "rows", "flagged", MIN_ROWS_PROPORTION),
    "fairness.sensitivity_ratio": ("events_flagged", "events", "labelled", "events", MIN_SUBGROUP_EVENTS),
    "fairness.ppv_ratio": ("events_flagged", "labelled_flagged", "labelled", "events", MIN_SUBGROUP_EVENTS),
}
_NEEDS_LABELS = {"fairness.sensitivity_ratio", "fairness.ppv_ratio"}


def fairness_metrics(add: Callable[..., None], counts: FairnessCounts, key: agg.Key, *, labels_matured: bool) -> None:
    """Write each non-reference group's ratios of ``key`` through ``add`` (the engine's writer);
    sensitivity and PPV only once the window's labels have matured."""
    version, site, _ = key
    plan = counts.plans.get(version)
    if plan is None:
        return
    for attribute in plan.attributes:
        groups = counts.groups.get(key, {}).get(attribute, {})
        if not groups:
            continue
        reference = plan.reference.get(attribute)
        for family, spec in _RATIOS.items():
            if family in _NEEDS_LABELS and not labels_matured:
                continue
            _ratios(add, family, spec, groups, reference, plan.small_group_min, version, site, attribute)


def _ratios(add: Callable[..., None], family: str, spec: tuple[str, str, str, str, int],
            groups: dict[str, GroupCounts], reference: str | None, minimum: int, version: int, site: str,
            attribute: str) -> None:
    numerator, denominator, size_of, positives_of, min_n = spec
    sizes = {group: getattr(c, size_of) for group, c in groups.items()}
    hidden = suppress_cells(sizes, {group: getattr(c, positives_of) for group, c in groups.items()}, minimum)
    base = {"attribute": attribute, "reference_group": reference, "bounds": list(FAIR_RATIO_BOUNDS)}
    ref = groups.get(reference) if reference is not None else None
    usable_reference = ref is not None and not hidden[str(reference)].any and getattr(ref, denominator) >= min_n
    for group in sorted(groups):
        if group == reference:
            continue
        metric_id = f"{family}/{attribute}{SEPARATOR}{_argument(group)}"
        mine = groups[group]
        base = {**base, "group": group}
        if hidden[group].any:
            add(metric_id, version, site, None, 0, "insufficient_data",
                {**base, "suppressed": True, "suppression": suppression_rule(minimum)})
            continue
        n = getattr(mine, denominator)
        if not usable_reference or n < min_n:
            reason = "the reference group is absent, suppressed or below the minimum" if not usable_reference \
                else f"fewer than {min_n} in the group's denominator"
            add(metric_id, version, site, None, n, "insufficient_data", {**base, "reason": reason, "min_n": min_n})
            continue
        assert ref is not None
        rate, ref_rate = getattr(mine, numerator) / n, getattr(ref, numerator) / getattr(ref, denominator)
        ratio = rate / ref_rate if ref_rate > 0 else None
        _, p = chi_square(np.array([getattr(ref, denominator) - getattr(ref, numerator), getattr(ref, numerator)]),
                          np.array([n - getattr(mine, numerator), getattr(mine, numerator)]))
        outside = ratio is not None and not FAIR_RATIO_BOUNDS[0] <= ratio <= FAIR_RATIO_BOUNDS[1]
        status = "insufficient_data" if ratio is None else "flagged" if outside and p < VITALOPS_P else "ok"
        add(metric_id, version, site, ratio, n, status,
            {**base, "group_value": rate, "reference_value": ref_rate, "reference_n": getattr(ref, denominator),
             "chi2_pvalue": p} if ratio is not None else {**base, "reason": "the reference group's value is 0"})


def _argument(group: str) -> str:
    """A group label as it may stand in a metric id (other characters as ``_``; details keep the label)."""
    return _NOT_IN_IDS.sub("_", group)[:100] or UNKNOWN
