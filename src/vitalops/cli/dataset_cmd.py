"""``vitalops dataset build SPEC OUT [--engine local|dask] [--scheduler URL]``: a point-in-time
training set from definitions, with a summary of rows, prevalence per site and missingness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, progress_bar, rows_table


def render_dataset_summary(summary: dict[str, Any]) -> None:
    fingerprint = summary["fingerprint"]
    console.print(
        key_value_table(
            {
                "dataset": summary["name"],
                "written to": summary["out"],
                "rows": summary["rows"],
                "labelled": summary["labelled"],
                "censored": summary["censored"],
                "positives": summary["positives"],
                "prevalence": summary["prevalence"],
                "facts version": fingerprint["facts_version"],
                "definitions": fingerprint["definitions_version"][:16],
                "content sha256": fingerprint["content_sha256"][:16],
            },
            title="Training set",
        )
    )
    console.print(rows_table(summary["sites"], ["site", "rows", "labelled", "positives", "prevalence"],
                             title="Prevalence per site"))
    console.print(rows_table(summary["missingness"], ["feature", "missing", "fraction"],
                             title="Missing before imputation"))


def register(app: typer.Typer) -> None:
    dataset = typer.Typer(help="Point-in-time training sets from feature, cohort and label definitions.",
                          no_args_is_help=True)
    app.add_typer(dataset, name="dataset")

    @dataset.command("build")
    def build(
        spec: Annotated[Path, typer.Argument(help="Definition file (YAML).")],
        out: Annotated[str, typer.Argument(help="Where to write the Delta table (folder or URL).")],
        engine: Annotated[str, typer.Option("--engine", help="local or dask.")] = "local",
        scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Build a training set: rows only see facts known at their index time."""
        from vitalops.core.extras import import_extra
        from vitalops.features.service import build_dataset

        if engine == "dask":
            import_extra("distributed")  # before any work: the Dask engine is the 'dask' extra
        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        with progress_bar(enabled=not as_json) as progress:
            task = progress.add_task("patient partitions", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            summary = build_dataset(database, principal, spec, out, lake_root=settings.lake_root, engine=engine,
                                    scheduler=scheduler, progress=report)
        emit(summary, as_json, render_dataset_summary)
