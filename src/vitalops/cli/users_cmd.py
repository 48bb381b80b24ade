"""``vitalops users ...`` and ``vitalops keys ...``: people, roles and API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table

users_app = typer.Typer(help="Manage users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[
        str, typer.Option("--role", help="admin, data_scientist, approver, operator, clinician, auditor, ehr")
    ],
    service: Annotated[
        bool | None, typer.Option("--service/--person", help="A service account (default for ehr) or a person")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user with a role. The very first user of an installation may be added as admin by anyone
    with access to the database (bootstrap); after that, only admins add users. A person then gets
    an enrollment token ('vitalops users enroll') to create their own key."""
    from sqlalchemy import func, select

    from vitalops.auth import SYSTEM, Permission, authorize
    from vitalops.auth.users import create_user, parse_role
    from vitalops.db.tables.identity import UserRow

    parse_role(role)
    database = open_database()
    with database.session() as session:
        bootstrap = session.scalar(select(func.count()).select_from(UserRow)) == 0 and role == "admin"
    actor = SYSTEM if bootstrap else cli_principal(database)
    if not bootstrap:
        authorize(database, actor, Permission.USERS_MANAGE, object_type="user", object_id=name)
    with database.session() as session:
        user = create_user(session, actor, name, role, service=service)
    emit(user.to_dict() | {"bootstrap": bootstrap}, as_json)


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """List users and their roles."""
    from vitalops.auth import Permission, authorize
    from vitalops.auth.users import list_users

    database = open_database()
    authorize(database, cli_principal(database), Permission.USERS_MANAGE, object_type="user", object_id="*")
    with database.session() as session:
        users = [user.to_dict() for user in list_users(session)]
    emit(users, as_json, lambda rows: console.print(rows_table(rows, ["name", "role", "created_at", "disabled"])))


@users_app.command("disable")
def users_disable(name: str, reason: Annotated[str, typer.Option("--reason")], as_json: JsonOption = False) -> None:
    """Disable a user; their keys stop working at once."""
    from vitalops.auth import Permission, authorize
    from vitalops.auth.users import disable_user

    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.USERS_MANAGE, object_type="user", object_id=name)
    with database.session() as session:
        emit(disable_user(session, actor, name, reason).to_dict(), as_json)


@users_app.command("enroll")
def users_enroll(
    name: str,
    hours: Annotated[int, typer.Option("--hours", help="How long the token stays valid")] = 72,
    as_json: JsonOption = False,
) -> None:
    """Issue a one-time enrollment token for the person NAME, who redeems it for a key of their own."""
    from vitalops.auth import Permission, authorize
    from vitalops.auth.users import create_enrollment

    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.USERS_MANAGE, object_type="user", object_id=name)
    with database.session() as session:
        enrollment, token = create_enrollment(session, actor, name, hours=hours)
    result = enrollment.to_dict() | {"token": token}
    if as_json:
        emit(result, True)
    else:
        emit(enrollment.to_dict(), False)
        console.print(f"\n[bold]Enrollment token for {name} (shown once; give it to them):[/] {token}")
        console.print(f"They run: vitalops keys redeem {token[:16]}...")


@keys_app.command("redeem")
def keys_redeem(
    token: str,
    days: Annotated[int, typer.Option("--days", help="Lifetime of the key in days.")] = 90,
    key_name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "default",
    as_json: JsonOption = False,
) -> None:
    """Exchange your enrollment token for your own API key (printed once). Set it as VITALOPS_API_KEY."""
    from vitalops.auth.users import redeem_enrollment

    database = open_database()
    with database.session() as session:
        key, plain = redeem_enrollment(session, token, key_name=key_name, days=days)
    result = key.to_dict() | {"key": plain}
    if as_json:
        emit(result, True)
    else:
        emit({k: v for k, v in result.items() if k != "key"}, False)
        console.print(f"\n[bold]Your API key (shown once, store it now):[/] {plain}")


@keys_app.command("create")
def keys_create(
    user: str,
    days: Annotated[int, typer.Option("--days", help="Lifetime in days.")] = 90,
    key_name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "default",
    as_json: JsonOption = False,
) -> None:
    """Issue an API key for USER: a service account (admins), or yourself (with your own key). The key
    is printed once and never stored. People get theirs through 'vitalops users enroll'."""
    from vitalops.auth import Permission, authorize
    from vitalops.auth.users import create_key

    database = open_database()
    actor = cli_principal(database)
    if not (actor.personal and actor.name == user):
        authorize(database, actor, Permission.KEYS_MANAGE, object_type="api_key", object_id=user)
    with database.session() as session:
        key, plain = create_key(session, actor, user, key_name=key_name, days=days)
    result = key.to_dict() | {"key": plain}
    if as_json:
        emit(result, True)
    else:
        emit({k: v for k, v in result.items() if k != "key"}, False)
        console.print(f"\n[bold]API key (shown once, store it now):[/] {plain}")


@keys_app.command("list")
def keys_list(user: Annotated[str | None, typer.Option("--user")] = None, as_json: JsonOption = False) -> None:
    """List API keys (prefixes only; keys themselves are never stored)."""
    from vitalops.auth import Permission, authorize
    from vitalops.auth.users import list_keys

    database = open_database()
    authorize(database, cli_principal(database), Permission.KEYS_MANAGE, object_type="api_key", object_id="*")
    with database.session() as session:
        keys = [key.to_dict() for key in list_keys(session, user)]
    emit(keys, as_json,
         lambda rows: console.print(rows_table(rows, ["prefix", "user", "name", "expires_at", "revoked"])))


@keys_app.command("revoke")
def keys_revoke(prefix: str, reason: Annotated[str, typer.Option("--reason")], as_json: JsonOption = False) -> None:
    """Revoke the API key with PREFIX."""
    from vitalops.auth import Permission, authorize
    from vitalops.auth.users import revoke_key

    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.KEYS_MANAGE, object_type="api_key", object_id=prefix)
    with database.session() as session:
        revoke_key(session, actor, prefix, reason)
    emit({"prefix": prefix, "revoked": True}, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
