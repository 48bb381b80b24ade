"""``vitalops pccp ...``: file a change-control plan, check a candidate against it, record a full review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table
from vitalops.governance.gate import raise_if_failed, record_full_review, run_pccp_check
from vitalops.governance.pccp import create_pccp

pccp_app = typer.Typer(help="Predetermined change-control plans and the gate.", no_args_is_help=True)


@pccp_app.command("set")
def pccp_set(name: str, plan_file: Path, as_json: JsonOption = False) -> None:
    """File a new version of the model's plan (YAML)."""
    database = open_database()
    plan = create_pccp(database, cli_principal(database), name, plan_file.read_text(encoding="utf-8"))
    emit({"model": name, "pccp_version": plan.number, "spec_hash": plan.spec_hash}, as_json)


@pccp_app.command("check")
def pccp_check(
    name: str,
    version: int,
    site: Annotated[str | None, typer.Option("--site", help="Judge against this site's champion")] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate every criterion of the plan; exit 1 if any fails (the check is recorded either way)."""
    database = open_database()
    check = run_pccp_check(database, cli_principal(database), name, version, site=site)
    rows = [
        {**c.model_dump(), "result": ("pass" if c.passed else "FAIL") if c.evaluable else "n/a"}
        for c in check.criteria
    ]

    def render(_: object) -> None:
        console.print(
            rows_table(
                rows,
                ["name", "value", "bound", "result", "note"],
                title=f"{name} v{version} vs champion v{check.champion_version or '-'}",
            )
        )
        console.print(f"evidence {check.evidence_hash} ({'passed' if check.passed else 'FAILED'})")

    emit(check.model_dump(mode="json"), as_json, render)
    raise_if_failed(check)


@pccp_app.command("review")
def pccp_review(
    name: str, version: int, reason: Annotated[str, typer.Option("--reason")], as_json: JsonOption = False
) -> None:
    """Record an approver's full review, which lets a version that failed its gate go beyond shadow."""
    database = open_database()
    emit(record_full_review(database, cli_principal(database), name, version, reason=reason).model_dump(), as_json)


def register(app: typer.Typer) -> None:
    """Add ``pccp`` to ``app``."""
    app.add_typer(pccp_app, name="pccp")
