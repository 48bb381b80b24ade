"""How every command speaks: ``--json`` for scripts, rich tables and plain words for people.

Commands build a JSON-safe result and hand it to ``emit`` with an optional renderer for people.
Errors are turned into a message and an exit code in ``vitalops.cli.main.run``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]

console = Console()
err_console = Console(stderr=True)


def print_json(value: Any) -> None:
    """Write ``value`` as one JSON document on stdout."""
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z, default=str).decode())


def emit(value: Any, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    """Print ``value`` as JSON, or through ``render`` (default: a key/value table) for people."""
    if as_json:
        print_json(value)
    elif render is not None:
        render(value)
    elif isinstance(value, dict):
        console.print(key_value_table(value))
    else:
        console.print(value)


def key_value_table(values: dict[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in values.items():
        table.add_row(str(key), cell_text(value))
    return table


def cell_text(value: Any) -> str:
    """How a value reads in a table: lists as comma-separated text (never a Python list), no ``None``."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(cell_text(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={cell_text(item)}" for key, item in value.items())
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rows_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> Table:
    """A table with one row per dict, showing ``columns`` in order.

    Numeric columns are right-aligned and never wrap (their width is the widest number), so a
    narrow terminal folds text columns, never a number mid-digit.
    """
    rows = list(rows)
    table = Table(title=title)
    for column in columns:
        values = [row.get(column) for row in rows if row.get(column) is not None]
        if values and all(_is_number(value) for value in values):
            width = max(len(cell_text(value)) for value in values)
            table.add_column(column, justify="right", no_wrap=True, min_width=width)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell_text(row.get(c)) for c in columns))
    return table


@contextmanager
def progress_bar(enabled: bool = True) -> Any:
    """A rich progress bar on stderr; disabled (a no-op object) for ``--json`` runs."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield progress
