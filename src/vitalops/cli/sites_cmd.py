"""``vitalops sites ...``: the installation's registered sites and the feed tag values that map to each."""

from __future__ import annotations

from typing import Annotated

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table

sites_app = typer.Typer(help="Registered sites: the only places models are deployed.", no_args_is_help=True)


@sites_app.command("add")
def sites_add(
    code: str,
    name: Annotated[str | None, typer.Option("--name", help="A readable name")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A feed's site tag value for it (repeat)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Register site CODE (admins)."""
    from vitalops.auth import Permission, authorize
    from vitalops.sites import create_site

    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.SETTINGS_MANAGE, object_type="site", object_id=code)
    with database.session() as session:
        emit(create_site(session, actor, code, name=name, tag_values=tag or []).to_dict(), as_json)


@sites_app.command("list")
def sites_list(as_json: JsonOption = False) -> None:
    """List the registered sites."""
    from vitalops.auth import Permission, authorize
    from vitalops.sites import list_sites

    database = open_database()
    authorize(database, cli_principal(database), Permission.MODELS_READ, object_type="site", object_id="*")
    with database.session() as session:
        rows = [site.to_dict() for site in list_sites(session)]
    emit(rows, as_json, lambda _: console.print(rows_table(rows, ["code", "name", "tag_values", "created_at"])))


def register(app: typer.Typer) -> None:
    app.add_typer(sites_app, name="sites")
