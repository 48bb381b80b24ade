"""``vitalops ingest PATH... [--site S] | --from-fhir URL [--since T] [--type Patient,...]``."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlparse

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, err_console, key_value_table, progress_bar, rows_table
from vitalops.core.clock import as_utc
from vitalops.errors import InvalidInput

if TYPE_CHECKING:
    from vitalops.core.settings import Settings

if TYPE_CHECKING:
    from vitalops.fhir.smart import BackendServicesAuth


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


def backend_auth(settings: Settings, token_url: str | None, client_id: str | None,
                 private_key: Path | None, key_id: str | None) -> BackendServicesAuth | None:
    """SMART Backend Services credentials from the options, else from ``VITALOPS_FHIR_*`` settings
    (``vitalops.fhir.smart.backend_auth``)."""
    from vitalops.fhir.smart import backend_auth as from_settings

    return from_settings(settings, token_url=token_url, client_id=client_id, private_key=private_key, key_id=key_id)


def _download(url: str, since: str | None, types: str | None, level: str, auth: BackendServicesAuth | None,
              home: Path, show: bool) -> list[Path]:
    from vitalops.fhir.bulk import download_export
    moment = None
    if since is not None:
        try:
            moment = as_utc(datetime.fromisoformat(since))
        except ValueError:
            raise InvalidInput(f"--since '{since}' is not an ISO date or time") from None
    host = re.sub(r"[^A-Za-z0-9.-]", "_", urlparse(url).netloc or "server")
    scope = re.sub(r"[^0-9A-Za-z]", "", f"{level}-{since or 'all'}")
    folder = home / "bulk" / f"{host}-{scope}"
    type_list = [t.strip() for t in types.split(",") if t.strip()] if types else None
    with progress_bar(enabled=show) as progress:
        task = progress.add_task("bulk export", total=1.0)

        def report(stage: str, fraction: float | None) -> None:
            progress.update(task, description=f"bulk export: {stage}", completed=fraction or 0.0)

        return download_export(url, folder, level=level, since=moment, types=type_list, auth=auth, progress=report)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        paths: Annotated[list[Path] | None, typer.Argument(help="NDJSON/Bundle files or folders.")] = None,
        site: Annotated[str | None, typer.Option("--site", help="Registered site of untagged resources.")] = None,
        from_fhir: Annotated[str | None, typer.Option("--from-fhir", help="FHIR server base URL ($export).")] = None,
        since: Annotated[str | None, typer.Option("--since", help="Only resources changed since (ISO).")] = None,
        types: Annotated[str | None, typer.Option("--type", help="Resource types, e.g. Patient,Observation.")] = None,
        level: Annotated[str, typer.Option("--level", help="system, patient, or group:<id>.")] = "system",
        token_url: Annotated[str | None, typer.Option("--token-url", help="SMART token endpoint.")] = None,
        client_id: Annotated[str | None, typer.Option("--client-id", help="SMART client id.")] = None,
        private_key: Annotated[Path | None, typer.Option("--private-key", help="PEM key signing assertions.")] = None,
        key_id: Annotated[str | None, typer.Option("--key-id", help="The key's id (kid) at the EHR.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Ingest FHIR R4 into the facts table; bad records go to the quarantine, the rest lands."""
        from vitalops.auth import Permission, authorize
        from vitalops.ingest.service import ingest_paths

        settings = cli_settings()
        if bool(paths) == bool(from_fhir):
            raise InvalidInput("give either PATH... or --from-fhir URL")
        database = open_database(settings)
        principal = cli_principal(database, settings)
        if from_fhir:
            # Patient data is downloaded only for someone allowed to ingest it.
            authorize(database, principal, Permission.DATA_INGEST, object_type="bulk_export", object_id=from_fhir)
            auth = backend_auth(settings, token_url, client_id, private_key, key_id)
            paths = _download(from_fhir, since, types, level, auth, settings.home, not as_json)
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
        if report.read and report.quarantined == report.read:
            # Nothing could be trusted: a script must not take this for a successful load.
            err_console.print(f"every one of the {report.read} records read was quarantined; nothing was ingested "
                              f"(see 'vitalops quality report --batch {report.batch}')")
            raise typer.Exit(1)
