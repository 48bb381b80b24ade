"""``vitalops init``: create or upgrade the home folder and the database."""

from __future__ import annotations

from typing import Any

import typer

from vitalops.cli.context import cli_settings, open_database
from vitalops.cli.output import JsonOption, emit
from vitalops.core.settings import Settings, get_settings, write_secrets_file
from vitalops.db.migrate import current_revision


def initialize(settings: Settings) -> dict[str, Any]:
    """Create the home folder and its secrets, and migrate the database. Safe to run again."""
    settings.home.mkdir(parents=True, exist_ok=True)
    for folder in ("lake", "artifacts"):
        (settings.home / folder).mkdir(exist_ok=True)
    secrets_written = write_secrets_file(settings.home)
    if secrets_written:
        get_settings.cache_clear()
        settings = get_settings()
    database = open_database(settings)
    try:
        revision = current_revision(database)
    finally:
        database.dispose()
    return {
        "home": str(settings.home.resolve()),
        "database": database.safe_url,
        "revision": revision,
        "secrets": "generated" if secrets_written else "kept",
    }


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(as_json: JsonOption = False) -> None:
        """Create or upgrade the home folder and the database."""
        emit(initialize(cli_settings()), as_json)
