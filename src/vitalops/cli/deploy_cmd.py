"""``vitalops deploy``, ``vitalops rollback`` and ``vitalops deployments history``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table
from vitalops.core.clock import as_utc

deployments_app = typer.Typer(help="What ran where, and when.", no_args_is_help=True)


def deploy(
    name: str,
    version: int,
    site: Annotated[list[str], typer.Option("--site", help="Site (repeat for several)")],
    mode: Annotated[str, typer.Option("--mode", help="shadow, canary:<pct>, ab:<pct> or champion")],
    reason: Annotated[str, typer.Option("--reason")] = "deployed",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan and stop")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show what will change at each site (current vs new), then apply it unless --dry-run."""
    from vitalops.governance.deploy import deploy_version

    database = open_database()
    plan = deploy_version(
        database, cli_principal(database), name, version, sites=site, mode=mode, reason=reason, dry_run=dry_run
    )
    rows = [c.model_dump() for c in plan.changes]
    columns = ["site", "slot", "current_version", "current_mode", "new_version", "new_mode"]
    emit(
        plan.model_dump(mode="json"),
        as_json,
        lambda _: console.print(
            rows_table(rows, columns, title=f"{'plan' if dry_run else 'applied'}: gate {plan.gate}")
        ),
    )


def rollback(
    name: str,
    site: Annotated[str, typer.Option("--site")],
    reason: Annotated[str, typer.Option("--reason")] = "rolled back",
    as_json: JsonOption = False,
) -> None:
    """Undo the site's latest deployment change."""
    from vitalops.governance.deploy import rollback_deployment

    database = open_database()
    emit(
        rollback_deployment(database, cli_principal(database), name, site=site, reason=reason).model_dump(mode="json"),
        as_json,
    )


@deployments_app.command("history")
def history(
    name: str,
    site: Annotated[str | None, typer.Option("--site")] = None,
    at: Annotated[datetime | None, typer.Option("--at", help="State as of this time (UTC)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every deployment change of a model, and the state (now or at --at)."""
    from vitalops.registry.service import read_deployment_history


    database = open_database()
    result = read_deployment_history(
        database, cli_principal(database), name, site=site, at=None if at is None else as_utc(at)
    )
    emit(result, as_json, _render_history)


def _render_history(result: dict[str, Any]) -> None:
    console.print(
        rows_table(
            result["events"],
            ["at", "site", "slot", "version", "previous_version", "mode", "action", "actor", "reason"],
            title="history",
        )
    )
    console.print(rows_table(result["state"], ["site", "slot", "version", "mode", "percent"], title="state"))


def register(app: typer.Typer) -> None:
    """Add ``deploy``, ``rollback`` and ``deployments`` to ``app``."""
    app.command("deploy")(deploy)
    app.command("rollback")(rollback)
    app.add_typer(deployments_app, name="deployments")
