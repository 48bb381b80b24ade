"""``vitalops demo``: build the synthetic hospital end to end on the embedded default, then serve it.

Each capability adds a step here, so that a newcomer sees everything working from one command.
"""

from __future__ import annotations

import shutil
from typing import Annotated, Any

import typer
from rich.panel import Panel

from vitalops.auth import SYSTEM, Principal
from vitalops.auth.users import create_key, create_user, get_user
from vitalops.cli.context import cli_settings, open_database
from vitalops.cli.init_cmd import initialize
from vitalops.cli.output import JsonOption, console, print_json
from vitalops.cli.serve_cmd import serve_forever
from vitalops.core.settings import Settings, get_settings
from vitalops.db import Database
from vitalops.errors import NotFound

#: The demo hospital's staff: one user per role (two approvers, for the two-person rule).
DEMO_USERS = (
    ("ada", "admin"),
    ("dana", "data_scientist"),
    ("alex", "approver"),
    ("blake", "approver"),
    ("omar", "operator"),
    ("casey", "clinician"),
    ("audrey", "auditor"),
    ("ehr-north", "ehr"),
)
DEMO_MARKER = "demo.done"


def ensure_demo_users(database: Database) -> tuple[dict[str, Principal], list[dict[str, Any]]]:
    """Create the demo staff (kept if present) and issue each a fresh API key, returned once."""
    principals: dict[str, Principal] = {}
    keys: list[dict[str, Any]] = []
    with database.session() as session:
        for name, role in DEMO_USERS:
            try:
                user = get_user(session, name)
            except NotFound:
                user = create_user(session, SYSTEM, name, role)
            principals[name] = user.principal()
            key, plain = create_key(session, SYSTEM, name, key_name="demo", days=30)
            keys.append({"user": name, "role": role, "key": plain, "expires_at": key.expires_at.date().isoformat()})
    return principals, keys


def build_demo(settings: Settings, *, as_json: bool) -> dict[str, Any]:
    """Run every demo step and return a summary."""
    summary: dict[str, Any] = {"home": initialize(settings)}
    get_settings.cache_clear()
    settings = get_settings()
    database = open_database(settings)
    principals, keys = ensure_demo_users(database)
    summary["users"] = keys
    if not as_json:
        console.print(Panel.fit("Demo staff and their API keys (shown once; use them as 'Authorization: Bearer ...')"))
        for entry in keys:  # one line each, never wrapped, so a key can be copied whole
            console.print(f"  {entry['user']:<10} {entry['role']:<15} {entry['key']}", soft_wrap=True,
                          highlight=False)
    (settings.home / DEMO_MARKER).write_text("ok\n", encoding="utf-8")
    return summary


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the platform when built.")] = True,
        reset: Annotated[bool, typer.Option("--reset", help="Delete the home folder first and rebuild.")] = False,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
        as_json: JsonOption = False,
    ) -> None:
        """Build the synthetic multi-site hospital end to end, then serve it."""
        settings = cli_settings()
        if reset and settings.home.exists():
            shutil.rmtree(settings.home)
        summary = build_demo(settings, as_json=as_json)
        summary["url"] = f"http://{host}:{port}"
        if as_json:
            print_json(summary)
        else:
            console.print(Panel.fit(
                f"VitalOps is serving the demo hospital at [bold]{summary['url']}[/]\n"
                f"API docs: {summary['url']}/docs   health: {summary['url']}/readyz\n"
                "Try: curl -H 'Authorization: Bearer <audrey's key>' " + summary["url"] + "/v1/audit",
                title="demo ready",
            ))
        if serve:
            serve_forever(host, port)
