"""``vitalops deid IN OUT [--dates year|shift|shift-time]``: write a de-identified copy of a FHIR
export. Only ``--dates year`` meets HIPAA Safe Harbor; the shift modes do not."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, rows_table
from vitalops.errors import InvalidInput


def _render(result: dict[str, Any]) -> None:
    console.print(
        key_value_table(
            {
                "run": result["run"],
                "read": result["read"],
                "written": result["written"],
                "skipped": result["skipped"],
                "dates": result["dates"],
                "rules": result["rules"],
            },
            title="De-identification",
        )
    )
    console.print(f"Dates: {result['dates_note']}.", highlight=False)
    rows = [{"action": action, "count": count} for action, count in result["actions"].items()]
    console.print(rows_table(rows, ["action", "count"], title="Actions"))
    if result["skipped_by_reason"]:
        skipped = [{"reason": reason, "count": n} for reason, n in result["skipped_by_reason"].items()]
        console.print(rows_table(skipped, ["reason", "count"], title="Resources left out"))


def register(app: typer.Typer) -> None:
    """Add ``deid`` to ``app``."""

    @app.command("deid")
    def deid(
        in_path: Annotated[Path, typer.Argument(metavar="IN", help="NDJSON/Bundle file or folder to read.")],
        out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="New or empty folder for the output.")],
        dates: Annotated[str, typer.Option("--dates", help=(
            "year: the year only, HIPAA Safe Harbor (ages over 89 grouped at 90). shift (default): every "
            "date of a patient moved by one offset, day precision; shift-time: the same keeping the time "
            "of day. The shift modes are NOT Safe Harbor (expert determination or a limited data set)."
        ))] = "shift",
        rules: Annotated[Path | None, typer.Option("--rules", help="Scrub rules TOML (default: Safe Harbor).")] = (
            None
        ),
        as_json: JsonOption = False,
    ) -> None:
        """De-identify FHIR resources into OUT, one NDJSON file per type, and print the counts of each action.

        Meets HIPAA Safe Harbor only with --dates year; the default --dates shift does not.
        """
        from vitalops.deid import run_deidentification
        from vitalops.deid.scrubber import DATE_MODES

        if dates not in DATE_MODES:
            raise InvalidInput(f"--dates must be one of {', '.join(DATE_MODES)}")
        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        key = settings.pseudonym_key.get_secret_value().encode()
        run_id, report = run_deidentification(database, principal, in_path, out_dir, key=key, dates=dates, rules=rules)
        summary = report.to_dict()
        emit({"run": run_id, **summary}, as_json, _render)
