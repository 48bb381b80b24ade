"""``vitalops pccp ...``: propose a change-control plan, decide on it, check a candidate, record a full review."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, rows_table

if TYPE_CHECKING:
    from vitalops.governance.pccp import PlanDiff

pccp_app = typer.Typer(help="Predetermined change-control plans and the gate.", no_args_is_help=True)
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit trail)")]


def render_diff(diff: PlanDiff) -> None:
    """The field-level changes of a proposal against the plan in force, as a table."""
    against = "nothing in force" if diff.in_force_version is None else f"v{diff.in_force_version} in force"
    rows = [{"field": c.field, "in force": c.in_force, "proposed": c.proposed} for c in diff.changes]
    console.print(rows_table(rows, ["field", "in force", "proposed"],
                             title=f"{diff.model} plan v{diff.proposed_version} against {against}"))


@pccp_app.command("propose")
def pccp_propose(name: str, plan_file: Path, as_json: JsonOption = False) -> None:
    """Propose a new version of the model's plan (YAML); it takes force once approvers approve it."""
    from vitalops.governance.pccp import diff_pccp, propose_pccp

    database = open_database()
    plan = propose_pccp(database, cli_principal(database), name, plan_file.read_text(encoding="utf-8"))
    with database.session() as session:
        diff = diff_pccp(session, name, plan.number)
    result = {"model": name, "pccp_version": plan.number, "state": plan.state, "spec_hash": plan.spec_hash,
              "approvals_required": plan.approvals_required, "diff": diff.model_dump(mode="json")}

    def render(_: object) -> None:
        render_diff(diff)
        console.print(f"proposed {name} plan v{plan.number}: needs {plan.approvals_required} approver(s) "
                      f"('vitalops pccp approve {name} {plan.number} --reason ...')")

    emit(result, as_json, render)


def _decide(name: str, number: int, decision: Literal["approve", "reject"], reason: str, as_json: bool) -> None:
    from vitalops.governance.pccp import decide_pccp
    database = open_database()
    plan = decide_pccp(database, cli_principal(database), name, number, decision=decision, reason=reason)
    approvals = sum(d.decision == "approve" for d in plan.decisions)
    emit({"model": name, "pccp_version": number, "state": plan.state, "approvals": approvals,
          "approvals_required": plan.approvals_required}, as_json)


@pccp_app.command("approve")
def pccp_approve(name: str, number: int, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Approve a proposed plan version (with your own key); it takes force at the policy's count."""
    _decide(name, number, "approve", reason, as_json)


@pccp_app.command("reject")
def pccp_reject(name: str, number: int, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Reject a proposed plan version (with your own key)."""
    _decide(name, number, "reject", reason, as_json)


@pccp_app.command("show")
def pccp_show(
    name: str,
    number: Annotated[int | None, typer.Argument(help="A plan version (default: the plan in force)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the plan in force (or one version) with its decisions."""
    from vitalops.auth import Permission, authorize
    from vitalops.governance.pccp import get_pccp

    database = open_database()
    authorize(database, cli_principal(database), Permission.MODELS_READ, object_type="model", object_id=name)
    with database.session() as session:
        plan = get_pccp(session, name, number)
    result = plan.model_dump(mode="json")

    def render(_: object) -> None:
        console.print(key_value_table({"model": name, "version": plan.number, "state": plan.state,
                                       "proposed by": plan.created_by, "spec hash": plan.spec_hash}))
        console.print(plan.spec_yaml)
        rows = [d.model_dump() for d in plan.decisions]
        console.print(rows_table(rows, ["approver", "decision", "reason", "credential", "at"], title="decisions"))

    emit(result, as_json, render)


@pccp_app.command("list")
def pccp_list(name: str, as_json: JsonOption = False) -> None:
    """Every plan version of the model with its state."""
    from vitalops.auth import Permission, authorize
    from vitalops.governance.pccp import list_pccps

    database = open_database()
    authorize(database, cli_principal(database), Permission.MODELS_READ, object_type="model", object_id=name)
    with database.session() as session:
        plans = list_pccps(session, name)
    rows: list[dict[str, Any]] = [
        {"version": p.number, "state": p.state, "proposed_by": p.created_by, "created_at": p.created_at,
         "approvals": sum(d.decision == "approve" for d in p.decisions), "required": p.approvals_required}
        for p in plans
    ]
    emit(rows, as_json, lambda _: console.print(
        rows_table(rows, ["version", "state", "proposed_by", "approvals", "required", "created_at"], title=name)))


@pccp_app.command("diff")
def pccp_diff(name: str, number: int, as_json: JsonOption = False) -> None:
    """What plan version NUMBER changes against the plan in force."""
    from vitalops.auth import Permission, authorize
    from vitalops.governance.pccp import diff_pccp

    database = open_database()
    authorize(database, cli_principal(database), Permission.MODELS_READ, object_type="model", object_id=name)
    with database.session() as session:
        diff = diff_pccp(session, name, number)

    def render(_: object) -> None:
        render_diff(diff)
        console.print(diff.unified, highlight=False, markup=False)

    emit(diff.model_dump(mode="json"), as_json, render)


@pccp_app.command("check")
def pccp_check(
    name: str,
    version: int,
    site: Annotated[str | None, typer.Option("--site", help="Judge against this site's champion")] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate every criterion of the plan in force; exit 1 unless it passed (recorded either way)."""
    from vitalops.governance.gate import raise_if_failed, run_pccp_check

    database = open_database()
    check = run_pccp_check(database, cli_principal(database), name, version, site=site)
    rows = [
        {**c.model_dump(), "result": ("pass" if c.passed else "FAIL") if c.evaluable else "n/a"}
        for c in check.criteria
    ]

    def render(_: object) -> None:
        console.print(
            rows_table(
                rows,
                ["name", "value", "bound", "result", "note"],
                title=f"{name} v{version} vs champion v{check.champion_version or '-'} "
                f"(plan v{check.pccp_version}, {site or 'all sites'})",
            )
        )
        console.print(f"evidence {check.evidence_hash} ({check.status.upper()})")

    emit(check.model_dump(mode="json"), as_json, render)
    raise_if_failed(check)


@pccp_app.command("review")
def pccp_review(
    name: str,
    version: int,
    reason: ReasonOption,
    waive: Annotated[list[str], typer.Option("--waive", help="A criterion this review waives (repeat for each)")],
    site: Annotated[str | None, typer.Option("--site", help="Review the check the gate at this site rests on")] = None,
    as_json: JsonOption = False,
) -> None:
    """Record a full review of a failed or incomplete check, naming every criterion it waives."""
    from vitalops.governance.gate import record_full_review

    database = open_database()
    status = record_full_review(database, cli_principal(database), name, version, reason=reason, waives=waive,
                                site=site)
    emit(status.model_dump(mode="json"), as_json)


def register(app: typer.Typer) -> None:
    """Add ``pccp`` to ``app``."""
    app.add_typer(pccp_app, name="pccp")
