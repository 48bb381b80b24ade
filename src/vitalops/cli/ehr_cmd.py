"""``vitalops ehr add|list|revoke``: the EHRs trusted to call the CDS services (JWT issuers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table
from vitalops.errors import InvalidInput

ehr_app = typer.Typer(help="Trusted CDS clients: the EHR issuers whose signed JWTs may call CDS Hooks.",
                      no_args_is_help=True)


@ehr_app.command("add")
def ehr_add(
    issuer: str,
    site: Annotated[str, typer.Option("--site", help="The site whose deployments score this EHR's patients")],
    jwks: Annotated[Path | None, typer.Option("--jwks", help="A file with the EHR's public JWK Set")] = None,
    jku: Annotated[list[str] | None, typer.Option("--jku", help="A JWK Set URL the EHR may name (repeat)")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Its ehr service account (default ehr-SITE)")] = None,
    fhir_server: Annotated[list[str] | None, typer.Option(
        "--fhir-server", help="A FHIR server base URL it may send as fhirServer (repeat; none given: any)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Trust ISSUER for a site, with its public keys or the jku URLs it may name, and the FHIR servers
    it may send (admins)."""
    from vitalops.auth import Permission, authorize
    from vitalops.cdshooks import add_client

    keys = None
    if jwks is not None:
        try:
            keys = orjson.loads(jwks.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            raise InvalidInput(f"--jwks {jwks}: not a readable JSON file", details={"field": "jwks"}) from None
    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.SETTINGS_MANAGE, object_type="ehr_client", object_id=issuer)
    with database.session() as session:
        emit(add_client(session, actor, issuer, site=site, jwks=keys, jku_allow=jku, account=account,
                        fhir_servers=fhir_server).to_dict(), as_json)


@ehr_app.command("list")
def ehr_list(as_json: JsonOption = False) -> None:
    """List the trusted EHR issuers."""
    from vitalops.auth import Permission, authorize
    from vitalops.cdshooks import list_clients

    database = open_database()
    authorize(database, cli_principal(database), Permission.SETTINGS_MANAGE, object_type="ehr_client",
              object_id="*")
    with database.read_session() as session:
        rows = [client.to_dict() for client in list_clients(session)]
    emit(rows, as_json, lambda _: console.print(rows_table(
        rows, ["issuer", "site", "account", "key_ids", "jku_allow", "fhir_servers", "revoked"])))


@ehr_app.command("revoke")
def ehr_revoke(
    issuer: str,
    reason: Annotated[str, typer.Option("--reason", help="Why it is no longer trusted")],
    as_json: JsonOption = False,
) -> None:
    """Stop trusting ISSUER: its JWTs are refused from now on (admins)."""
    from vitalops.auth import Permission, authorize
    from vitalops.cdshooks import revoke_client

    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.SETTINGS_MANAGE, object_type="ehr_client", object_id=issuer)
    with database.session() as session:
        emit(revoke_client(session, actor, issuer, reason).to_dict(), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(ehr_app, name="ehr")
