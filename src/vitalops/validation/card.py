"""Model cards in the sections of the CHAI Applied Model Card (draft schema v0.2):
basic information, release information, model summary, uses and directions, warnings, trust
ingredients, key metrics, resources. Built from the registry's records and the validation
report; rendered as JSON, Markdown and HTML.

Fields read, all optional except ``model["name"]`` and ``version["version"]`` (a missing one is
shown as "Not provided"): model ``name, description, developer, contact, intended_use, limitations,
intended_users, how_to_use, target_population, out_of_scope, clinical_owner, risk_class,
outcome, keywords, funding_source, stakeholders, publications, patient_disclosure``; version
``version, state, created_at, estimator, hyperparameters, feature_set, features,
dataset_fingerprint, definitions_version, code_version, artifact_sha256, training_data,
submitted_by, regulatory_approval``; each approval ``approver, decision, reason, created_at,
report_hash``; the PCCP ``version, content_hash, allowed_modifications, acceptance_criteria``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from vitalops.errors import InvalidInput
from vitalops.validation.labels import group_label
from vitalops.validation.report import ValidationReport
from vitalops.validation.report_html import interval_text, number, template_environment

NOT_PROVIDED = "Not provided"
CARD_SCHEMA = "CHAI Applied Model Card, draft schema v0.2 sections"
SECTION_TITLES = {
    "basic_information": "Basic information",
    "release_information": "Release information",
    "model_summary": "Model summary",
    "uses_and_directions": "Uses and directions",
    "warnings": "Warnings",
    "trust_ingredients": "Trust ingredients",
    "key_metrics": "Key metrics",
    "resources": "Resources",
}
# Ratios to the reference group outside these bounds are listed as fairness warnings
# (the four-fifths rule and its reciprocal).
FAIR_RATIO_BOUNDS = (0.8, 1.25)


class ModelCard(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_name: str
    model_version: str
    report_hash: str
    basic_information: dict[str, Any]
    release_information: dict[str, Any]
    model_summary: dict[str, Any]
    uses_and_directions: dict[str, Any]
    warnings: dict[str, Any]
    trust_ingredients: dict[str, Any]
    key_metrics: dict[str, Any]
    resources: dict[str, Any]

    def sections(self) -> dict[str, dict[str, Any]]:
        return {key: getattr(self, key) for key in SECTION_TITLES}

    def to_json(self) -> dict[str, Any]:
        """The card as a JSON-safe dict: schema, model, version, report hash, then the sections."""
        return {
            "schema": CARD_SCHEMA,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "report_hash": self.report_hash,
            **self.sections(),
        }

    def to_markdown(self) -> str:
        """The card as Markdown, one ``##`` heading per CHAI section."""
        lines = [f"# Model card: {self.model_name} {self.model_version}", "", f"_{CARD_SCHEMA}_", ""]
        for key, title in SECTION_TITLES.items():
            lines += [f"## {title}", ""]
            lines += _markdown_fields(getattr(self, key), depth=0)
            lines.append("")
        lines.append(f"Validation report hash: `{self.report_hash}`")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """The card as one self-contained HTML page."""
        return (
            template_environment()
            .get_template("model_card.html.j2")
            .render(card=self, titles=SECTION_TITLES, label=_label, schema=CARD_SCHEMA)
        )


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _markdown_fields(value: dict[str, Any], depth: int) -> list[str]:
    indent = "  " * depth
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{indent}- **{_label(key)}**")
            lines += _markdown_fields(item, depth + 1)
        elif isinstance(item, list) and item and all(isinstance(row, dict) for row in item):
            lines.append(f"{indent}- **{_label(key)}**")
            for row in item:
                lines.append(f"{indent}  - " + "; ".join(f"{_label(k)}: {v}" for k, v in row.items()))
        elif isinstance(item, list):
            lines.append(f"{indent}- **{_label(key)}**: " + ("; ".join(str(v) for v in item) or "None"))
        else:
            lines.append(f"{indent}- **{_label(key)}**: {item}")
    return lines


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None or value == "" or value == []:
        return NOT_PROVIDED
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _metric_rows(report: ValidationReport, names: tuple[str, ...]) -> list[dict[str, str]]:
    return [
        {"label": name, "value": interval_text(report.overall.metrics[name])}
        for name in names
        if name in report.overall.metrics
    ]


def _fairness(report: ValidationReport) -> tuple[list[dict[str, str]], list[str]]:
    rows: list[dict[str, str]] = []
    concerns: list[str] = []
    low_bound, high_bound = FAIR_RATIO_BOUNDS
    attributes = list(dict.fromkeys(result.attribute for result in report.subgroups))
    for attribute in attributes:
        shown = [r for r in report.subgroups if r.attribute == attribute and not r.suppressed and r.ratios]
        suppressed = sum(1 for r in report.subgroups if r.attribute == attribute and r.suppressed)
        for metric in ("sensitivity", "ppv", "flag_rate"):
            estimates = [r.ratios[metric].estimate for r in shown if r.ratios]
            ratios = [estimate for estimate in estimates if estimate is not None]
            if ratios:
                rows.append(
                    {
                        "label": f"{attribute}: {metric} ratio to reference, range",
                        "value": f"{number(min(ratios), 2)}–{number(max(ratios), 2)}",
                    }
                )
        for result in shown:
            for metric, ratio in (result.ratios or {}).items():
                if ratio.estimate is not None and not low_bound <= ratio.estimate <= high_bound:
                    concerns.append(
                        f"{attribute} {group_label(attribute, result.group)}: {metric} ratio "
                        f"{number(ratio.estimate, 2)} to reference {group_label(attribute, result.reference_group)} "
                        f"is outside {low_bound}–{high_bound}"
                    )
        if suppressed:
            rows.append({"label": f"{attribute}: groups suppressed (small-cell rule)", "value": str(suppressed)})
    return rows, concerns


def fairness_concerns(report: ValidationReport) -> list[str]:
    """Each shown subgroup ratio outside the fairness bounds, in words (what the card warns of)."""
    return _fairness(report)[1]


def build_model_card(
    *,
    model: dict[str, Any],
    version: dict[str, Any],
    report: ValidationReport,
    approvals: list[dict[str, Any]],
    pccp: dict[str, Any] | None,
) -> ModelCard:
    """The model card of one version. Missing optional fields read "Not provided".

    Raises InvalidInput when ``model["name"]`` or ``version["version"]`` is missing.
    """
    if not model.get("name") or version.get("version") in (None, ""):
        raise InvalidInput("a model card needs the model's name and the version's number")
    name, number_text = str(model["name"]), str(version["version"])
    fairness_rows, fairness_concerns = _fairness(report)
    overall = report.overall
    rule = report.threshold_rule or {}
    approved = [a for a in approvals if a.get("decision", "approve") in ("approve", "approved")]
    release_date = max((str(a.get("created_at")) for a in approved if a.get("created_at")), default=None)
    patients = "" if overall.patients is None else f" of {overall.patients} patients"
    test_data = (
        f"{overall.n} rows{patients}, {overall.positives} positive outcomes (prevalence "
        f"{number(overall.metrics['prevalence'].estimate)}); {_text(version, 'training_data')}"
    )
    resampled = (
        report.resampling.description
        if report.resampling is not None
        else f"{report.n_bootstrap} bootstrap resamples (what was resampled was not recorded)"
    )
    bootstrap = (
        f"Bootstrap: {resampled} (seed {report.seed}), "
        f"{round(report.confidence * 100, 1)}% percentile intervals; threshold {number(report.threshold, 4)} "
        f"chosen by {rule.get('kind', 'a given value')} {rule.get('value', '')}".rstrip()
    )
    external_rows = [
        {"label": f"external site {site.site}: AUROC", "value": interval_text(site.metrics["auroc"])}
        for site in report.external
        if not site.suppressed and site.metrics
    ]
    pccp_text = (
        f"Predetermined change control plan version {pccp.get('version', NOT_PROVIDED)} "
        f"(hash {pccp.get('content_hash', NOT_PROVIDED)}); allowed modifications: "
        f"{_text(pccp, 'allowed_modifications')}"
        if pccp
        else "No predetermined change control plan is filed; every change needs a full review."
    )
    return ModelCard(
        model_name=name,
        model_version=number_text,
        report_hash=report.content_hash(),
        basic_information={
            "model_name": name,
            "model_developer": _text(model, "developer"),
            "developer_contact": _text(model, "contact"),
            "clinical_owner": _text(model, "clinical_owner"),
        },
        release_information={
            "release_stage": _text(version, "state"),
            "release_date": release_date or _text(version, "created_at"),
            "release_version": number_text,
            "global_availability": "Deployed per site by the hospital's governance; not a commercial release",
            "ehr_compatibility": ["FHIR R4", "CDS Hooks 2.0"],
            "regulatory_approval": _text(version, "regulatory_approval"),
            "approvals": [
                {
                    "approver": _text(a, "approver"),
                    "decision": _text(a, "decision"),
                    "reason": _text(a, "reason"),
                    "at": _text(a, "created_at"),
                    "report_hash": _text(a, "report_hash"),
                }
                for a in approvals
            ],
        },
        model_summary={
            "summary": _text(model, "description"),
            "keywords": list(model.get("keywords") or []),
        },
        uses_and_directions={
            "intended_use_and_workflow": _text(model, "intended_use"),
            "primary_intended_users": _text(model, "intended_users"),
            "how_to_use": _text(model, "how_to_use"),
            "targeted_patient_population": _text(model, "target_population"),
            "cautioned_out_of_scope_settings": _text(model, "out_of_scope"),
        },
        warnings={
            "known_risks_and_limitations": [str(item) for item in model.get("limitations") or []]
            + (list(report.warnings) or ["No warning recorded by validation"]),
            "known_biases_or_ethical_considerations": fairness_concerns
            or [f"No shown subgroup ratio outside {FAIR_RATIO_BOUNDS[0]}–{FAIR_RATIO_BOUNDS[1]}"],
            "clinical_risk_level": _text(model, "risk_class"),
        },
        trust_ingredients={
            "ai_system_facts": {
                "outcomes_and_outputs": _text(model, "outcome"),
                "model_type": _text(version, "estimator"),
                "foundation_models": "None",
                "input_data_source": "EHR data as FHIR R4 resources, normalised to point-in-time features",
                "output_and_input_data_types": (
                    f"Inputs: feature set {_text(version, 'feature_set')} ({_text(version, 'features')}); "
                    "output: a risk probability between 0 and 1"
                ),
                "development_data_characterization": (
                    f"dataset fingerprint {_text(version, 'dataset_fingerprint')}, definitions version "
                    f"{_text(version, 'definitions_version')}"
                ),
                "bias_mitigation_approaches": (
                    "Subgroup metrics with intervals and ratios to a reference group are reviewed before "
                    "approval. "
                    + (report.suppression_rule or f"Groups under {report.small_group_min} rows are suppressed.")
                ),
                "ongoing_maintenance": pccp_text,
                "security": f"artifact sha256 {_text(version, 'artifact_sha256')}, verified on every load",
                "transparency": (
                    f"code version {_text(version, 'code_version')}; hyperparameters "
                    f"{_text(version, 'hyperparameters')}; validation report hash {report.content_hash()}"
                ),
            },
            "transparency_information": {
                "funding_source": _text(model, "funding_source"),
                "third_party_information": "None",
                "stakeholders_consulted": _text(model, "stakeholders"),
            },
        },
        key_metrics={
            "usefulness_usability_efficacy": {
                "metric_goal": "Discriminate patients who reach the outcome, with a useful alert burden",
                "results": _metric_rows(
                    report, ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "flag_rate")
                ),
                "interpretation": "Estimates with bootstrap intervals at the operating threshold",
                "test_type": "Retrospective validation on held-out data",
                "testing_data_description": test_data,
                "validation_process_and_justification": bootstrap,
            },
            "fairness_equity": {
                "metric_goal": (f"Ratios to the reference group within {FAIR_RATIO_BOUNDS[0]}–{FAIR_RATIO_BOUNDS[1]}"),
                "results": fairness_rows or [{"label": "subgroups", "value": "none evaluated"}],
                "interpretation": "Ratio of each group's metric to its attribute's reference group",
                "test_type": "Subgroup analysis by sex, age band, race, ethnicity and site",
                "testing_data_description": test_data,
                "validation_process_and_justification": bootstrap,
            },
            "safety_reliability": {
                "metric_goal": "Calibrated risks (slope near 1, intercept near 0) that hold at other sites",
                "results": _metric_rows(report, ("brier", "calibration_intercept", "calibration_slope", "ece"))
                + external_rows,
                "interpretation": "Calibration on the validation data; discrimination on held-out sites",
                "test_type": "Calibration analysis and external validation on held-out sites",
                "testing_data_description": test_data,
                "validation_process_and_justification": bootstrap,
            },
        },
        resources={
            "evaluation_references": f"Validation report {report.content_hash()}",
            "clinical_trial": NOT_PROVIDED,
            "peer_reviewed_publications": _text(model, "publications"),
            "reimbursement_status": NOT_PROVIDED,
            "patient_consent_or_disclosure": _text(model, "patient_disclosure"),
        },
    )
