"""Self-contained HTML for a validation report (Jinja2 template, inline SVG, no JS, no network)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from vitalops.validation.labels import group_label
from vitalops.validation.plots import calibration_svg, decision_curve_svg

if TYPE_CHECKING:
    from vitalops.validation.report import ValidationReport

TEMPLATES = Path(__file__).parent / "templates"
METRIC_LABELS = {
    "auroc": "AUROC",
    "auprc": "AUPRC (average precision)",
    "brier": "Brier score",
    "calibration_intercept": "Calibration intercept",
    "calibration_slope": "Calibration slope",
    "ece": "Expected calibration error",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "flag_rate": "Flag rate",
    "prevalence": "Prevalence",
}


def number(value: Any, digits: int = 3) -> str:
    """A metric as text: fixed decimals, or an en dash when it is undefined."""
    if value is None:
        return "–"
    return f"{float(value):.{digits}f}"


def interval_text(interval: Any, digits: int = 3) -> str:
    """``estimate (low–high)``; undefined parts shown as dashes."""
    if interval is None:
        return "suppressed"
    return f"{number(interval.estimate, digits)} ({number(interval.low, digits)}–{number(interval.high, digits)})"


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment for validation templates, built on first use."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = number
    environment.filters["interval"] = interval_text
    environment.globals["metric_labels"] = METRIC_LABELS
    environment.globals["group_label"] = group_label
    return environment


def render_report_html(report: ValidationReport, *, title: str) -> str:
    """The report as one HTML page with calibration and decision-curve plots inline."""
    calibration = calibration_svg([(row.mean_predicted, row.observed_rate) for row in report.calibration])
    decision = decision_curve_svg(
        [(point.threshold, point.model.estimate or 0.0, point.treat_all) for point in report.decision_curve]
    )
    attributes: dict[str, list[Any]] = {}
    for result in report.subgroups:
        attributes.setdefault(result.attribute, []).append(result)
    return (
        template_environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            report=report,
            report_hash=report.content_hash(),
            attributes=attributes,
            calibration_plot=Markup(calibration),  # noqa: S704 - numbers and fixed labels only
            decision_plot=Markup(decision),  # noqa: S704 - numbers and fixed labels only
            ratio_metrics=("sensitivity", "specificity", "ppv", "flag_rate", "auroc"),
        )
    )
