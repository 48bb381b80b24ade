"""``vitalops audit verify | export | log``: the tamper-evident trail."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, err_console, print_json, progress_bar, rows_table
from vitalops.core.clock import as_utc, isoformat_utc
from vitalops.errors import IntegrityError, InvalidInput

audit_app = typer.Typer(help="Verify, export and read the audit trail.", no_args_is_help=True)


def parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 date or time; a value without a zone is taken as UTC."""
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidInput(f"{option} '{value}' is not an ISO 8601 date or time") from None


@audit_app.command("verify")
def verify(as_json: JsonOption = False) -> None:
    """Walk the keyed chain against the signed checkpoints; exit 1 naming the first broken event.

    Catches edited, deleted, reordered, rehashed and forged events, and events cut from the end
    below the newest checkpoint. An intact chain's head is recorded as a new checkpoint.
    """
    from vitalops.audit import verify_chain
    from vitalops.auth import Permission, authorize

    settings = cli_settings()
    database = open_database(settings)
    authorize(database, cli_principal(database), Permission.AUDIT_READ, object_type="audit", object_id="chain")
    with progress_bar(enabled=not as_json) as progress:
        task = progress.add_task("verifying", total=None)
        report = verify_chain(database.engine, checkpoints=settings.audit_checkpoints_path, record_checkpoint=True,
                              progress=lambda n: progress.update(task, completed=n))
    if not report.ok:
        raise IntegrityError(f"audit chain broken at event {report.broken_at}: {report.problem}",
                             details=report.to_dict())
    emit(report.to_dict(), as_json)


@audit_app.command("export")
def export(
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time (UTC if no zone).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write JSON lines here instead of stdout.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write events as JSON lines (one event per line, with hashes for independent verification)."""
    from vitalops.audit import iter_events, verify_chain
    from vitalops.auth import Permission, authorize

    moment = parse_time(since, "--since") if since else None
    settings = cli_settings()
    database = open_database(settings)
    authorize(database, cli_principal(database), Permission.AUDIT_READ, object_type="audit", object_id="export")
    # An export is evidence: the chain is verified and its head checkpointed first.
    report = verify_chain(database.engine, checkpoints=settings.audit_checkpoints_path, record_checkpoint=True)
    if not report.ok:
        raise IntegrityError(f"audit chain broken at event {report.broken_at}: {report.problem}",
                             details=report.to_dict())
    count = 0
    with database.session() as session:
        if out is None:
            for event in iter_events(session, since=moment):
                typer.echo(orjson.dumps(event.to_dict()).decode())
                count += 1
            return
        with out.open("wb") as handle:
            for event in iter_events(session, since=moment):
                handle.write(orjson.dumps(event.to_dict()) + b"\n")
                count += 1
    summary = {"events": count, "out": str(out), "since": isoformat_utc(moment) if moment else None}
    if as_json:
        print_json(summary)
    else:
        err_console.print(f"wrote {count} events to {out}")


@audit_app.command("log")
def log(
    object_ref: Annotated[
        str | None, typer.Option("--object", help="TYPE or TYPE:ID, e.g. model:deterioration")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 25,
    as_json: JsonOption = False,
) -> None:
    """Show recent events, newest first."""
    from vitalops.audit import list_events
    from vitalops.auth import Permission, authorize

    object_type, _, object_id = (object_ref or "").partition(":")
    database = open_database()
    authorize(database, cli_principal(database), Permission.AUDIT_READ, object_type="audit", object_id="log")
    with database.session() as session:
        events = list_events(session, object_type=object_type or None, object_id=object_id or None, limit=limit)
    rows = [event.to_dict() for event in events]
    emit(rows, as_json, lambda rows: console.print(
        rows_table(rows, ["seq", "at", "actor", "action", "object_type", "object_id", "payload"], title="Audit trail")
    ))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
