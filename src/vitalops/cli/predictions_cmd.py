"""``vitalops predictions archive [--older-than 7d]``: move the prediction log's older rows from the
metadata database into the lake's archive (idempotent: a rerun after a crash adds nothing twice)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table


def render_archive(summary: dict[str, Any]) -> None:
    console.print(key_value_table({
        "moved": summary["moved"],
        "newly archived": summary["newly_archived"],
        "made before": summary["made_before"],
        "archive": summary["archive"],
    }, title="Prediction archive"))


def register(app: typer.Typer) -> None:
    predictions = typer.Typer(help="The prediction log and its archive.", no_args_is_help=True)
    app.add_typer(predictions, name="predictions")

    @predictions.command("archive")
    def archive(
        older_than: Annotated[str, typer.Option("--older-than", help="Age of the rows to move: 7d, 12h, 30m.")
                              ] = "7d",
        as_json: JsonOption = False,
    ) -> None:
        """Move logged predictions (served and shadow) older than --older-than into the archive."""
        from vitalops.serving.archive import archive_predictions, parse_age

        age = parse_age(older_than)
        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        emit(archive_predictions(database, principal, settings.lake_root, older_than=age), as_json, render_archive)
