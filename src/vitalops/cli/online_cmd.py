"""``vitalops online rebuild``: derive the online store from the lake."""

from __future__ import annotations

from typing import Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, emit, progress_bar


def register(app: typer.Typer) -> None:
    online = typer.Typer(help="The online store serving patients' recent facts by key.", no_args_is_help=True)
    app.add_typer(online, name="online")

    @online.command("rebuild")
    def rebuild_store(as_json: JsonOption = False) -> None:
        """Replace the online store with the facts it keeps from the lake (idempotent): for a lake that
        predates the store, or after registering definitions with a longer window."""
        from vitalops.auth import Permission, authorize
        from vitalops.features.facts_view import ENGINE_COLUMNS
        from vitalops.features.online_store import open_online_store, rebuild, registered_lookback_us
        from vitalops.lake.facts import FactsStore

        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        authorize(database, principal, Permission.DATA_INGEST, object_type="online_store", object_id="rebuild")
        retention_us = registered_lookback_us(database)
        facts = FactsStore(settings.lake_root).dataset().to_table(columns=list(ENGINE_COLUMNS))
        store = open_online_store(settings.online_store)
        try:
            with progress_bar(enabled=not as_json) as progress:
                task = progress.add_task("facts", total=facts.num_rows)
                kept = rebuild(store, facts, retention_us,
                               progress=lambda done: progress.advance(task, done))
            result: dict[str, Any] = {
                "store": settings.online_store.split("://", 1)[0], "lake_facts": facts.num_rows, "kept": kept,
                "patients": store.patients(),
                "retention_hours": None if retention_us is None else retention_us / 3_600_000_000,
            }
        finally:
            store.close()
        emit(result, as_json)
