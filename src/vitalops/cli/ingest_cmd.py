"""``vitalops ingest PATH... [--site S] | --from-fhir URL [--since T] [--type Patient,...]``."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, progress_bar, rows_table
from vitalops.core.clock import as_utc
from vitalops.errors import InvalidInput
from vitalops.fhir.bulk import download_export
from vitalops.ingest.service import ingest_paths


def render_ingest_report(result: dict[str, Any]) -> None:
    console.print(
        key_value_table(
            {k: result[k] for k in ("batch", "read", "ingested", "skipped", "quarantined", "facts", "duplicates")},
            title="Ingest batch",
        )
    )
    if result["per_site"]:
        rows = [{"site": site, "resources": count} for site, count in result["per_site"].items()]
        console.print(rows_table(rows, ["site", "resources"], title="Ingested per site"))
    for title, key in (("Skipped", "skipped_reasons"), ("Quarantined", "quarantine_reasons")):
        if result[key]:
            rows = [{"reason": reason, "count": count} for reason, count in result[key].items()]
            console.print(rows_table(rows, ["reason", "count"], title=title))


def _download(url: str, since: str | None, types: str | None, home: Path, show: bool) -> list[Path]:
    moment = None
    if since is not None:
        try:
            moment = as_utc(datetime.fromisoformat(since))
        except ValueError:
            raise InvalidInput(f"--since '{since}' is not an ISO date or time") from None
    host = re.sub(r"[^A-Za-z0-9.-]", "_", urlparse(url).netloc or "server")
    folder = home / "bulk" / f"{host}-{re.sub(r'[^0-9A-Za-z]', '', since or 'all')}"
    type_list = [t.strip() for t in types.split(",") if t.strip()] if types else None
    with progress_bar(enabled=show) as progress:
        task = progress.add_task("bulk export", total=1.0)

        def report(stage: str, fraction: float | None) -> None:
            progress.update(task, description=f"bulk export: {stage}", completed=fraction or 0.0)

        return download_export(url, folder, since=moment, types=type_list, progress=report)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        paths: Annotated[list[Path] | None, typer.Argument(help="NDJSON/Bundle files or folders.")] = None,
        site: Annotated[str | None, typer.Option("--site", help="Site of resources without a site tag.")] = None,
        from_fhir: Annotated[str | None, typer.Option("--from-fhir", help="FHIR server base URL ($export).")] = None,
        since: Annotated[str | None, typer.Option("--since", help="Only resources changed since (ISO).")] = None,
        types: Annotated[str | None, typer.Option("--type", help="Resource types, e.g. Patient,Observation.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Ingest FHIR R4 into the facts table; bad records go to the quarantine, the rest lands."""
        settings = cli_settings()
        if bool(paths) == bool(from_fhir):
            raise InvalidInput("give either PATH... or --from-fhir URL")
        database = open_database(settings)
        principal = cli_principal(database, settings)
        if from_fhir:
            paths = _download(from_fhir, since, types, settings.home, not as_json)
        with progress_bar(enabled=not as_json) as progress:
            task = progress.add_task("resources read", total=None)
            report = ingest_paths(
                database,
                principal,
                paths or [],
                site=site,
                progress=lambda done: progress.update(task, completed=done),
            )
        emit(report.to_dict(), as_json, render_ingest_report)
