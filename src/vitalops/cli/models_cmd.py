"""``vitalops models ...``: list, show, register, approve, reject, and model cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, rows_table
from vitalops.errors import InvalidInput

models_app = typer.Typer(help="The model registry: versions, approvals and model cards.", no_args_is_help=True)
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit trail).")]


@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """Every model with its latest version and where it is champion."""
    from vitalops.registry import service

    database = open_database()
    rows = service.read_models(database, cli_principal(database))
    columns = ["name", "risk_class", "versions", "latest", "latest_state", "champions"]
    emit(rows, as_json, lambda r: console.print(rows_table(r, columns)))


@models_app.command("show")
def models_show(
    name: str, version: Annotated[int | None, typer.Argument()] = None, as_json: JsonOption = False
) -> None:
    """A model (versions, deployments, plan) or one version (lineage, approvals, checks, gate)."""
    from vitalops.registry import service

    database = open_database()
    actor = cli_principal(database)
    if version is None:
        detail = service.read_model(database, actor, name)

        def render(value: dict[str, Any]) -> None:
            emit(value["model"], False)
            console.print(
                rows_table(
                    value["versions"],
                    ["number", "state", "estimator", "submitter", "threshold"],
                    title="versions",
                )
            )
            console.print(
                rows_table(
                    value["deployments"],
                    ["site", "slot", "version", "mode", "percent"],
                    title="deployments",
                )
            )

        emit(detail, as_json, render)
    else:
        emit(service.read_version(database, actor, name, version), as_json, render_version)


def render_version(detail: dict[str, Any]) -> None:
    """One version for people: identity and lineage, then its history, approvals, checks and gate."""
    version = detail["version"]
    inputs = [column["name"] for column in version["signature"]["inputs"]]
    console.print(key_value_table({
        "version": f"{version['model']} v{version['number']}",
        "state": version["state"],
        "submitted by": f"{version['submitter']} ({version['source']}, {version['created_at']})",
        "estimator": f"{version['estimator']} {version['hyperparameters']}",
        "threshold": version["threshold"],
        "inputs": f"{len(inputs)}: {', '.join(inputs)}",
        "output": version["signature"]["output"],
        "dataset fingerprint": version["dataset_fingerprint"],
        "definitions version": version["definitions_version"],
        "code version": version["code_version"],
        "artifact sha256": version["artifact_sha256"],
        "report hash": version["report_hash"],
    }, title="Model version"))
    console.print(rows_table(detail["transitions"], ["at", "from_state", "to_state", "actor", "reason"],
                             title="Lifecycle"))
    if detail["approvals"]:
        console.print(rows_table(detail["approvals"], ["at", "approver", "decision", "reason", "valid"],
                                 title="Approvals"))
    if detail["pccp_checks"]:
        console.print(rows_table(detail["pccp_checks"], ["id", "at", "site", "passed", "actor", "evidence_hash"],
                                 title="PCCP checks"))
    gate = detail["gate"]
    verdict = "open beyond shadow" if gate["open"] else "closed beyond shadow"
    console.print(f"gate: {verdict} ({gate['reason']})")


@models_app.command("register")
def models_register(
    name: str,
    model_file: Path,
    flavor: Annotated[str, typer.Option("--flavor", help="sklearn (skops), lightgbm, xgboost or onnx")],
    dataset: Annotated[str, typer.Option("--dataset", help="URI of the dataset to validate on")],
    features: Annotated[str, typer.Option("--features", help="Comma-separated input columns, in order")],
    threshold_rule: Annotated[
        str, typer.Option("--threshold", help="sensitivity:0.8, alert_budget:5 or fixed:0.3")
    ] = "sensitivity:0.8",
    as_json: JsonOption = False,
) -> None:
    """Bring your own fitted model: store it, check its signature, validate it on a dataset, register it."""
    from vitalops.training.byo import register_model_file


    database = open_database()
    result = register_model_file(
        database,
        cli_principal(database),
        name,
        model_file,
        flavor=flavor,
        dataset_uri=dataset,
        feature_names=[f.strip() for f in features.split(",")],
        threshold_rule=threshold_rule,
    )
    emit(result.summary(), as_json)


@models_app.command("approve")
def models_approve(name: str, version: int, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Approve a validated version (not your own); approved once the model's policy is met."""
    from vitalops.governance.approvals import approve_version

    database = open_database()
    outcome = approve_version(database, cli_principal(database), name, version, reason=reason)
    emit(
        {
            "model": name,
            "version": version,
            "state": outcome.version.state,
            "approvals": f"{outcome.approvals_counted} of {outcome.approvals_required}",
        },
        as_json,
    )


@models_app.command("reject")
def models_reject(name: str, version: int, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Reject a validated version (final)."""
    from vitalops.governance.approvals import reject_version

    database = open_database()
    rejected = reject_version(database, cli_principal(database), name, version, reason=reason)
    emit({"model": name, "version": version, "state": rejected.state}, as_json)


@models_app.command("card")
def models_card(
    name: str,
    version: int,
    fmt: Annotated[str, typer.Option("--format", help="md, html or json")] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout")] = None,
    as_json: JsonOption = False,
) -> None:
    """The version's model card (CHAI applied model card sections)."""
    from vitalops.registry import service


    renderers = {"md": "to_markdown", "html": "to_html", "json": "to_json"}
    if fmt not in renderers:
        raise InvalidInput(f"--format must be one of {', '.join(renderers)}")
    database = open_database()
    card = service.build_card(database, cli_principal(database), name, version)
    text = getattr(card, renderers["json" if as_json else fmt])()
    if out is not None:
        out.write_text(text, encoding="utf-8")
        emit({"written": str(out), "format": fmt}, as_json)
    else:
        typer.echo(text)


def register(app: typer.Typer) -> None:
    """Add ``models`` to ``app``."""
    app.add_typer(models_app, name="models")
