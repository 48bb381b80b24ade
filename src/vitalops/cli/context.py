"""What every command needs: the settings, a migrated database, and who is acting.

The command line acts as the person whose key is in ``VITALOPS_API_KEY`` (authenticated like an
API call), else as the user named by ``VITALOPS_USER``: a name from the environment proves nothing,
so it carries the credential ``cli:unverified`` and counts for no governance act. Without either,
in development only, it acts as the local installation owner (roles admin, data_scientist,
operator, auditor: never approver). In production one of them is required. See docs/security.md.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

from vitalops.auth.permissions import Role
from vitalops.errors import ConfigError, NotFound, Unauthenticated

if TYPE_CHECKING:  # settings and the database layer load when a command needs them, not at start-up
    from vitalops.auth import Principal
    from vitalops.core.settings import Settings
    from vitalops.db import Database

LOCAL_OWNER_ROLES = frozenset({Role.ADMIN, Role.DATA_SCIENTIST, Role.OPERATOR, Role.AUDITOR})
#: Databases opened by the running command; ``close_databases`` disposes them when it ends.
_opened: list[Database] = []


def cli_settings() -> Settings:
    from vitalops.core.logging import configure_logging
    from vitalops.core.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return settings


def open_database(settings: Settings | None = None, *, migrate: bool = True) -> Database:
    """The metadata database, reachable and migrated to the current revision."""
    from vitalops.db import Database
    from vitalops.db.migrate import is_current, upgrade

    settings = settings or cli_settings()
    if settings.database_url is None and not settings.home.exists():
        raise ConfigError(f"no VitalOps home at {settings.home}; run 'vitalops init' first")
    database = Database(settings.db_url)
    _opened.append(database)
    database.ping()
    if migrate and not is_current(database):
        upgrade(database)
    return database


def cli_principal(database: Database, settings: Settings | None = None) -> Principal:
    """Who this command acts as (see the module docstring)."""
    from vitalops.auth import Principal
    from vitalops.auth.users import authenticate_key, get_user
    from vitalops.core.settings import get_settings

    settings = settings or get_settings()
    if settings.api_key is not None:
        with database.session() as session:
            principal = authenticate_key(session, settings.api_key.get_secret_value())
        if settings.user and settings.user != principal.name:
            raise Unauthenticated(
                f"VITALOPS_USER names '{settings.user}' but VITALOPS_API_KEY is the key of '{principal.name}'"
            )
        return principal
    if settings.user:
        with database.session() as session:
            try:
                user = get_user(session, settings.user)
            except NotFound:
                raise Unauthenticated(f"VITALOPS_USER names '{settings.user}', who is not a user here") from None
        if user.disabled:
            raise Unauthenticated(f"user '{settings.user}' is disabled")
        return user.principal()
    if settings.environment == "production":
        raise Unauthenticated("set VITALOPS_API_KEY (or VITALOPS_USER) to the user this command acts as")
    return Principal(name=f"local:{getpass.getuser()}", roles=LOCAL_OWNER_ROLES, kind="user")


def close_databases() -> None:
    """Dispose every database this command opened (called by the entry point when a command ends)."""
    while _opened:
        _opened.pop().dispose()
