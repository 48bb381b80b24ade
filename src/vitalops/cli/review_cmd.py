"""``vitalops review list|decide``: the human-review queue of uncertain predictions (clinicians)."""

from __future__ import annotations

from typing import Annotated

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table
from vitalops.errors import InvalidInput

review_app = typer.Typer(help="Predictions held for a clinician's review.", no_args_is_help=True)


@review_app.command("list")
def review_list(
    state: Annotated[str, typer.Option("--state", help="pending, accepted, overridden or all")] = "pending",
    site: Annotated[str | None, typer.Option("--site", help="Only this site")] = None,
    as_json: JsonOption = False,
) -> None:
    """List queued predictions, oldest first, with why each was queued."""
    from vitalops.auth import Permission, authorize
    from vitalops.review import list_items

    database = open_database()
    authorize(database, cli_principal(database), Permission.REVIEW_DECIDE, object_type="review", object_id="*")
    with database.read_session() as session:
        items = [item.to_dict() for item in list_items(session, state=None if state == "all" else state, site=site)]
    rows = [{"id": i["id"], "model": i["model"], "site": i["site"], "risk": f"{i['score']:.1%}", "band": i["band"],
             "why": "; ".join(r["text"] for r in i["reasons"]), "state": i["state"], "queued": i["created_at"]}
            for i in items]
    emit(items, as_json, lambda _: console.print(rows_table(
        rows, ["id", "model", "site", "risk", "band", "why", "state", "queued"])))


@review_app.command("decide")
def review_decide(
    item_id: int,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit trail)")],
    accept: Annotated[bool, typer.Option("--accept", help="Agree with the model")] = False,
    override: Annotated[bool, typer.Option("--override", help="Disagree with the model")] = False,
    as_json: JsonOption = False,
) -> None:
    """Accept or override queued prediction ITEM_ID with a reason (clinicians)."""
    from vitalops.auth import Permission, authorize
    from vitalops.review import decide

    if accept == override:
        raise InvalidInput("give exactly one of --accept or --override", details={"field": "decision"})
    database = open_database()
    actor = cli_principal(database)
    authorize(database, actor, Permission.REVIEW_DECIDE, object_type="review", object_id=str(item_id))
    with database.session() as session:
        emit(decide(session, actor, item_id, "accept" if accept else "override", reason).to_dict(), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
