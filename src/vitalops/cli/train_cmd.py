"""``vitalops train SPEC``: train, validate and register a model version."""

from __future__ import annotations

from pathlib import Path

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, emit, err_console


def train(spec: Path, as_json: JsonOption = False) -> None:
    """Train the estimator a spec names, validate it, and register a version (draft if it misses its minimums)."""
    from vitalops.training.trainer import train_from_spec


    database = open_database()
    actor = cli_principal(database)
    result = train_from_spec(database, actor, spec, progress=None if as_json else err_console.print)
    emit(result.summary(), as_json)


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""
    app.command("train")(train)
