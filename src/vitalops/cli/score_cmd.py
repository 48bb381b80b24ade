"""``vitalops score NAME --cohort SPEC [--at T [--latest]] | --input TABLE --output OUT``: batch
scoring with the versions deployed at each site, on the local engine or a Dask cluster."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, progress_bar, rows_table


def render_batch(summary: dict[str, Any]) -> None:
    console.print(key_value_table({
        "model": summary["model"],
        "run": summary["run_id"],
        "written to": f"{summary['out']} (Delta version {summary['delta_version']})",
        "rows scored": summary["rows"],
        "predictions": f"{summary['predictions']} ({summary['archived']} newly archived)",
        "sites": ", ".join(summary["sites"]),
        "engine": summary["engine"],
    }, title="Batch scoring"))
    modes = [{"mode": mode, "predictions": count} for mode, count in summary["by_mode"].items()]
    console.print(rows_table(modes, ["mode", "predictions"], title="Predictions by mode"))


def score_command(
    name: str,
    output: Annotated[str, typer.Option("--output", help="Where to write the Delta table (folder or URL).")],
    cohort: Annotated[Path | None, typer.Option("--cohort", help="Definition file whose cohort is scored.")] = None,
    input_uri: Annotated[str | None, typer.Option("--input", help="Delta or Parquet table of feature rows.")] = None,
    at: Annotated[datetime | None, typer.Option("--at", help="Only index rows at or before this moment.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="With --at: each patient's latest row (a census).")
                      ] = False,
    site: Annotated[str | None, typer.Option("--site", help="Score only this site's rows.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="local or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a cohort or a table with the model deployed at each site; log every prediction."""
    from vitalops.batch import score_batch
    from vitalops.core.extras import import_extra
    from vitalops.serving.service import default_context

    if engine == "dask":
        import_extra("distributed")  # before any work: the Dask engine is the 'dask' extra
    settings = cli_settings()
    database = open_database(settings)
    principal = cli_principal(database, settings)
    with progress_bar(enabled=not as_json) as progress:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        summary = score_batch(database, principal, name, output, lake_root=settings.lake_root,
                              runtime=default_context(settings).runtime, cohort=cohort, input_uri=input_uri, at=at,
                              latest=latest, site=site, engine=engine, scheduler=scheduler, progress=report)
    emit(summary, as_json, render_batch)


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)
