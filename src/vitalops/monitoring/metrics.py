"""The registry of monitored metrics: a stable id, what it measures, its test and binning, and the
default rule that sets a result's status to ``flagged``.

An id is a family (``input_drift.psi``) and, for families measured per feature or per concept, an
argument after a slash (``input_drift.psi/creatinine_last``). An id never changes meaning: a new
statistic is a new family. ``get_metric`` refuses an id whose family is not registered, so an alert
rule that names an unknown metric is refused when it is filed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from vitalops.errors import InvalidInput

#: Rows a window needs before a distribution statistic (deciles: 10 rows a bin) is judged; below it:
#: ``insufficient_data``.
MIN_ROWS_DRIFT = 100
#: Rows a window needs before a proportion (missing rate, flag rate) is compared, by a chi-square test.
MIN_ROWS_PROPORTION = 30
#: Labelled rows, and rows of each outcome class, a window needs for performance and calibration.
MIN_ROWS_PERFORMANCE = 50
MIN_CLASS_ROWS = 5
#: How far measured AUROC must fall below CBPE's estimate (with its interval wholly below) to flag,
#: and the patients with the outcome a window needs before it is judged: with a handful of them a
#: resampled interval is too narrow (the scenario replay's control site, roughly ten deteriorating
#: patients in four weeks, measured 0.60 [0.41, 0.75] against an estimate of 0.82 and a validation
#: of 0.83).
AUROC_GAP_MIN = 0.05
MIN_GAP_PATIENTS = 20
#: Facts per concept a window needs for data-quality rates.
MIN_FACTS_QUALITY = 20
#: Events (for sensitivity) or flagged labelled predictions (for PPV) a subgroup, and its reference
#: group, need before their ratio is judged.
MIN_SUBGROUP_EVENTS = 20
#: Sites with a value a window needs before one of them is judged against the others.
MIN_SITES_OUTLIER = 3
#: Patient-days a window needs before alerts per 100 patient-days is shown.
MIN_PATIENT_DAYS = 10

#: ``subgroup``: ``<attribute>.<group>`` (``age_band.80+``); ``metric``: another family's full id.
Per = Literal["feature", "concept", "subgroup", "metric"]
Source = Literal["predictions", "outcomes", "feedback", "facts", "review", "results"]
_ARGUMENT = re.compile(r"^[A-Za-z0-9_.+\-]{1,120}$")
#: The family whose argument is another metric's id (``sites.outlier/input_drift.psi/age``).
SITES_OUTLIER = "sites.outlier"


@dataclass(frozen=True)
class MetricDefinition:
    """One family of metrics. ``per`` says what the id's argument names (None: no argument)."""

    family: str
    title: str
    unit: str
    source: Source
    test: str
    flagged_when: str
    per: Per | None = None
    min_n: int = 1
    version_specific: bool = True

    def metric_id(self, argument: str | None = None) -> str:
        if (argument is None) != (self.per is None):
            raise InvalidInput(f"metric '{self.family}' " + (f"is measured per {self.per}: name one after a slash"
                                                              if self.per else "takes no argument"),
                               details={"field": "metric"})
        return self.family if argument is None else f"{self.family}/{argument}"


def _m(*args: object, **kwargs: object) -> MetricDefinition:
    return MetricDefinition(*args, **kwargs)  # type: ignore[arg-type]


_FAIRNESS_TEST = ("groups of the version's validation report (sex, age band, race, ethnicity; its reference group and "
                  "small-group minimum), joined from the lake's demographic facts by patient key; the report's "
                  "small-cell suppression per site, window and attribute; chi-square 2 x 2 against the reference")
_FAIRNESS = tuple(_m(family, title, "ratio to the reference group", source, f"{what}; {_FAIRNESS_TEST}",
                     "outside 0.8-1.25 (the model card's bounds) and the chi-square p < 0.01", per="subgroup",
                     min_n=min_n)
                  for family, title, source, what, min_n in (
    ("fairness.flag_rate_ratio", "a subgroup's flag rate over the reference group's", "predictions",
     "logged decisions over predictions of the group, over the reference group's", MIN_ROWS_PROPORTION),
    ("fairness.sensitivity_ratio", "a subgroup's sensitivity over the reference group's, once labels matured",
     "outcomes", "events scored at or over the threshold over events, windows whose label horizon has passed",
     MIN_SUBGROUP_EVENTS),
    ("fairness.ppv_ratio", "a subgroup's PPV over the reference group's, once labels matured", "outcomes",
     "events among labelled predictions at or over the threshold, windows whose label horizon has passed",
     MIN_SUBGROUP_EVENTS)))
_OPERATIONS = (
    _m("ops.alerts_per_100_patient_days", "flagged predictions per 100 patient-days", "alerts per 100 patient-days",
       "predictions", "flagged predictions of the version at the site (online and batch; for a shadow, those it would "
       "have shown) x 100 over patient-days: distinct (patient, UTC day) pairs among the version's predictions, "
       "each weighted by the window's share of a day when the window is shorter", "never (alert rules judge it)",
       min_n=MIN_PATIENT_DAYS),
    _m("ops.error_rate", "share of prediction requests the service failed (answered 5xx)", "fraction",
       "predictions", "failures answered 5xx over requests: the online predictions logged plus the failures "
       "counted once the request named the model (REST predictions, and CDS Hooks calls refused outside "
       "scoring; not a refused JWT or permission), per hour, code and site; per version those while it "
       "scored, version 0 the model at the site including failures before a version was chosen",
       ">= 0.01 and the one-sided exact binomial test against 0.01 p < 0.01", min_n=MIN_ROWS_PROPORTION),
    _m("ops.input_error_rate", "share of prediction requests refused as the request's fault (answered 4xx)",
       "fraction", "predictions", "failures answered 4xx (a missing or out-of-tolerance input, an unknown "
       "patient, no champion at the site; a CDS Hooks body that is not a request, a prefetch missing and not "
       "fetchable) over requests, as ops.error_rate", "never (alert rules judge it)",
       min_n=MIN_ROWS_PROPORTION),
    _m("workflow.card_to_action_minutes.p50", "median minutes from a card to the clinician's first action",
       "minutes", "feedback", "per card, its first CDS Hooks feedback time minus its prediction's time; "
       "quantile (linear) over the cards of the window's predictions", "never (alert rules judge it)",
       min_n=MIN_FACTS_QUALITY),
    _m("workflow.card_to_action_minutes.p90", "90th percentile minutes from a card to the clinician's first action",
       "minutes", "feedback", "as the median, 0.9 quantile (linear)", "never (alert rules judge it)",
       min_n=MIN_FACTS_QUALITY),
    _m("workflow.review_queue_size", "review items pending at the window's end", "items", "review",
       "items of the model at the site created before the window's end and not decided by then",
       "never (alert rules judge it)", min_n=0, version_specific=False),
    _m("workflow.review_queue_age_hours", "hours the oldest pending review item had waited at the window's end",
       "hours", "review", "window end minus the creation of the oldest item pending then; details hold the median",
       "never (alert rules judge it)", min_n=1, version_specific=False),
)
_DRIFT_TEST = ("deciles of the version's training reference (inner edges np.quantile, linear; outer bins open), "
               "shares floored at 1e-4")
METRICS: dict[str, MetricDefinition] = {m.family: m for m in (
    _m("input_drift.psi", "population stability index of a feature", "PSI", "predictions",
       f"PSI over {_DRIFT_TEST}; categorical features (at most 5 distinct values): one bin per category",
       "PSI >= 0.2 and the KS test (chi-square for a categorical feature) p < 0.01, or the 'vitalops' rule's "
       "other effect size (robust Wasserstein >= 0.1, or a category's share moved by 0.1) with that p",
       per="feature", min_n=MIN_ROWS_DRIFT),
    _m("input_drift.wasserstein", "Wasserstein distance of a feature, over the reference's IQR / 1.349",
       "reference robust SDs", "predictions",
       "W1 between the window's values and the reference's, exact on the value counts, divided by the "
       "reference IQR / 1.349; details hold Evidently's normed value (over the reference SD)",
       ">= 0.1 and the KS p < 0.01", per="feature", min_n=MIN_ROWS_DRIFT),
    _m("input_drift.evidently", "Evidently 0.7's default drift test of a feature, for comparability",
       "the test's p-value or distance", "predictions",
       "reference <= 1,000 rows: KS (numeric) or chi-square goodness of fit (categorical), p-value; above: "
       "Wasserstein over the reference SD (numeric) or Jensen-Shannon distance (categorical)",
       "p < 0.05, or distance >= 0.1", per="feature", min_n=MIN_ROWS_DRIFT),
    _m("input_drift.missing_rate", "share of rows without a value for a feature", "fraction", "predictions",
       "rows whose logged value is null over rows; against the reference's rate (chi-square 2 x 2)",
       "the rate moved by 0.1 or more from the reference's and the chi-square p < 0.01",
       per="feature", min_n=MIN_ROWS_PROPORTION),
    _m("prediction_drift.score_psi", "population stability index of the scores", "PSI", "predictions",
       f"PSI of the scores over {_DRIFT_TEST}", "PSI >= 0.2 and the KS p < 0.01", min_n=MIN_ROWS_DRIFT),
    _m("prediction_drift.flag_rate", "share of predictions at or over the version's threshold", "fraction",
       "predictions", "decisions over predictions; against the reference's flag rate at the same threshold",
       "ratio to the reference outside 0.8-1.25 and the chi-square 2 x 2 p < 0.01", min_n=MIN_ROWS_PROPORTION),
    _m("ops.latency_ms.p50", "median latency of online predictions", "ms", "predictions",
       "quantile_cont over the window's logged latencies (batch rows have none)", "never (alert rules judge it)"),
    _m("ops.latency_ms.p95", "95th percentile latency of online predictions", "ms", "predictions",
       "quantile_cont over the window's logged latencies", "never (alert rules judge it)"),
    _m("ops.latency_ms.p99", "99th percentile latency of online predictions", "ms", "predictions",
       "quantile_cont over the window's logged latencies", "never (alert rules judge it)"),
    _m("ops.volume", "predictions logged", "predictions", "predictions", "count of logged rows (served and "
       "shadow, online and batch) of the version at the site in the window", "never (alert rules judge it)",
       min_n=0),
    _m("workflow.override_rate", "share of card feedback that overrode the card", "fraction", "feedback",
       "CDS Hooks feedback items 'overridden' over all items, for the version's predictions made in "
       "the window at the site", "never (alert rules judge it)", min_n=MIN_FACTS_QUALITY),
    _m("quality.out_of_range_rate", "share of a concept's numeric facts outside its plausible range",
       "fraction", "facts", "facts effective in the window at the site outside the terminology's plausible "
       "range, over the concept's numeric facts", ">= 0.02", per="concept", min_n=MIN_FACTS_QUALITY,
       version_specific=False),
    _m("quality.unit_mix", "share of a concept's facts that arrived in a unit other than its canonical one",
       "fraction", "facts", "facts whose source unit differs from the canonical unit, over the concept's facts "
       "(computed only when the facts table records the source unit)", "never (alert rules judge it)",
       per="concept", min_n=MIN_FACTS_QUALITY, version_specific=False),
    _m("quality.freshness_hours", "hours from the latest fact known at the site to the window's end", "hours",
       "facts", "window end minus the latest known_at at or before it", "> 24", min_n=0,
       version_specific=False),
    *(_m(f"estimated_performance.{name}", f"{title} expected before labels (CBPE)", unit, "predictions",
         f"{title} of the window's scores under the isotonic calibration fitted on the version's temporal test "
         "rows (on its training rows when the test rows hold one outcome class only) "
         "(expected confusion matrix at the version's threshold; the AUROC of the expected ROC curve); "
         "assumes no concept shift", "never (alert rules judge it against the measured value)",
         min_n=MIN_ROWS_DRIFT)
      for name, title, unit in (("auroc", "AUROC", "AUROC"), ("sensitivity", "sensitivity", "fraction"),
                                ("specificity", "specificity", "fraction"), ("ppv", "PPV", "fraction"))),
    _m("calibration.intercept", "calibration-in-the-large once labels have matured", "log-odds", "outcomes",
       "intercept of the logistic recalibration line y ~ a + b logit(score) (validation's fit), windows whose "
       "label horizon has passed; 95% interval over resampled patients", "|intercept| >= 0.5"
       " and the interval excludes 0", min_n=MIN_ROWS_PERFORMANCE),
    _m("calibration.slope", "calibration slope once labels have matured", "slope", "outcomes",
       "slope of the logistic recalibration line; 95% interval over resampled patients",
       "outside 0.7-1.3 and the interval excludes 1", min_n=MIN_ROWS_PERFORMANCE),
    _m("performance.auroc", "AUROC once labels have matured", "AUROC", "outcomes",
       "AUROC of the window's labelled predictions; 95% interval over resampled patients",
       "never (alert rules judge it against the version's validation)", min_n=MIN_ROWS_PERFORMANCE),
    _m("performance.brier", "Brier score once labels have matured", "Brier", "outcomes",
       "mean squared error of the scores; 95% interval over resampled patients", "never (alert rules judge it)",
       min_n=MIN_ROWS_PERFORMANCE),
    _m("performance.sensitivity", "sensitivity at the version's threshold", "fraction", "outcomes",
       "flagged positives over positives; 95% interval over resampled patients", "never (alert rules judge it)",
       min_n=MIN_ROWS_PERFORMANCE),
    _m("performance.specificity", "specificity at the version's threshold", "fraction", "outcomes",
       "unflagged negatives over negatives; 95% interval over resampled patients",
       "never (alert rules judge it)", min_n=MIN_ROWS_PERFORMANCE),
    _m("performance.ppv", "positive predictive value at the version's threshold", "fraction", "outcomes",
       "positives among flagged predictions; 95% interval over resampled patients",
       "never (alert rules judge it)", min_n=MIN_ROWS_PERFORMANCE),
    _m("performance.auroc_gap", "measured AUROC minus the AUROC CBPE expected of the same window", "AUROC",
       "outcomes", "performance.auroc of the window's labelled predictions minus estimated_performance.auroc of its "
       "scores; what the estimate cannot see: outcomes that no longer follow the inputs as they did (concept "
       "shift), or inputs so far from the reference that its calibration does not hold",
       f"measured below the estimate by at least {AUROC_GAP_MIN} and the measured AUROC's 95% interval (resampled "
       f"patients) wholly below the estimate; judged once {MIN_GAP_PATIENTS} patients had the outcome",
       min_n=MIN_ROWS_PERFORMANCE),
    *_FAIRNESS, *_OPERATIONS,
    _m(SITES_OUTLIER, "how far a site's value of a metric lies from the other sites' in the same window",
       "robust SDs of the other sites", "results",
       "(site value - median of the other sites) / max(1.4826 MAD of the other sites, 0.1 |median|, and for a "
       "fraction sqrt(m(1 - m)/n) of the site's own n), the other sites' values being those with a value in "
       "the window for the same metric id and version; n is the number of such sites",
       "|robust z| > 3.5 (Iglewicz and Hoaglin's cut-off): this site is the outlier", per="metric",
       min_n=MIN_SITES_OUTLIER),
)}


def get_metric(metric_id: str) -> MetricDefinition:
    """The definition of ``metric_id`` (a family, with its argument where it takes one).

    Raises InvalidInput naming the problem: an unknown family, a missing or unexpected argument.
    """
    family, slash, argument = metric_id.partition("/")
    definition = METRICS.get(family)
    if definition is None:
        raise InvalidInput(f"unknown metric '{metric_id[:200]}'; the known families are "
                           + ", ".join(sorted(METRICS)), details={"field": "metric"})
    if slash and definition.per == "metric":
        if argument.partition("/")[0] == SITES_OUTLIER:
            raise InvalidInput(f"metric '{family}' judges another family's metric, not its own",
                               details={"field": "metric"})
        get_metric(argument)
        return definition
    if slash and (definition.per is None or not _ARGUMENT.match(argument)):
        raise InvalidInput(f"metric '{family}' " + (f"needs a {definition.per} name of letters, digits, '_', '.' "
                                                     "or '-' after the slash" if definition.per
                                                     else "takes no argument"), details={"field": "metric"})
    if not slash and definition.per is not None:
        raise InvalidInput(f"metric '{family}' is measured per {definition.per}: name one, as "
                           f"'{family}/<{definition.per}>'", details={"field": "metric"})
    return definition


def list_metrics() -> list[MetricDefinition]:
    """Every registered family, by id."""
    return [METRICS[family] for family in sorted(METRICS)]
