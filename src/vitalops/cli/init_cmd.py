"""``vitalops init``: create or upgrade the home folder and the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vitalops.cli.context import cli_settings, open_database
from vitalops.cli.output import JsonOption, emit


def initialize(home: Path) -> dict[str, Any]:
    """Create the home folder and its secrets, and migrate the database. Safe to run again.

    Secrets are generated before the settings are loaded, since outside development the settings
    refuse to load without them.
    """
    from vitalops.audit.verify import mark_keyed_chain
    from vitalops.core.settings import get_settings, write_secrets_file
    from vitalops.db.migrate import current_revision

    home.mkdir(parents=True, exist_ok=True)
    for folder in ("lake", "artifacts"):
        (home / folder).mkdir(exist_ok=True)
    secrets_written = write_secrets_file(home)
    get_settings.cache_clear()
    settings = cli_settings()
    database = open_database(settings)
    try:
        revision = current_revision(database)
        # Once: the events written before the chain was keyed are named in the first signed checkpoint.
        marked = mark_keyed_chain(database.engine, settings.audit_checkpoints_path)
    finally:
        database.dispose()
    return {
        "home": str(settings.home.resolve()),
        "database": database.safe_url,
        "revision": revision,
        "secrets": "generated" if secrets_written else "kept",
        "audit_checkpoints": str(settings.audit_checkpoints_path),
        "audit_keyed_after": None if marked is None else marked.keyed_after,
    }


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(as_json: JsonOption = False) -> None:
        """Create or upgrade the home folder and the database."""
        from vitalops.core.settings import home_from_environment

        emit(initialize(home_from_environment()), as_json)
