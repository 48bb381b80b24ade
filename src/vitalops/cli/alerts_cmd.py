"""``vitalops alerts ...``: file and show a model's alert rules, judge them, and move alerts along
their lifecycle (operators); ``vitalops incidents ...``: incidents and their post-incident review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, rows_table
from vitalops.errors import InvalidInput

alerts_app = typer.Typer(help="Alerts raised by monitoring rules, and the rules themselves.", no_args_is_help=True)
rules_app = typer.Typer(help="Each model's alert rules (YAML, see docs/alerts.md).", no_args_is_help=True)
incidents_app = typer.Typer(help="Incidents around alerts, and their post-incident reviews.", no_args_is_help=True)
alerts_app.add_typer(rules_app, name="rules")
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit trail).")]


def _value(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def render_alerts(alerts: list[dict[str, Any]]) -> None:
    rows = [{**a, "value": _value(a["value"]), "seen": a["last_seen_at"][5:16].replace("T", " "),
             "deployed": f"{a['model']} v{a['version']} {a['site']}", "outcome": a["action_outcome"],
             "when": f"{a['comparison']} {a['threshold']:g} / {a['window']}"} for a in alerts]
    console.print(rows_table(rows, ["id", "state", "severity", "deployed", "metric", "value", "when", "count",
                                    "outcome", "seen"],
                             title=f"{len(rows)} alert{'s' if len(rows) != 1 else ''}"))


def render_evaluations(evaluations: list[dict[str, Any]]) -> None:
    """One line per model whose rules were judged after a monitoring run."""
    for evaluation in evaluations:
        if evaluation["rule_set"] is not None:
            console.print(f"alerts of {evaluation['model']} (rule set {evaluation['rule_set']}): "
                          f"{len(evaluation['opened'])} opened, {len(evaluation['repeated'])} repeated",
                          highlight=False)


def _read_file(path: Path) -> str:
    if not path.is_file():
        raise InvalidInput(f"no rules file at {path}", details={"field": "file"})
    return path.read_text(encoding="utf-8")


@rules_app.command("set")
def rules_set(model: str, file: Path, as_json: JsonOption = False) -> None:
    """File FILE as MODEL's alert rules (a new version, in force at once); operators."""
    from vitalops.monitoring.alert_rules import set_rules

    database = open_database()
    rule_set = set_rules(database, cli_principal(database), model, _read_file(file))
    emit({"model": model, "rule_set": rule_set.number, "spec_hash": rule_set.spec_hash,
          "rules": [rule.id for rule in rule_set.rules]}, as_json)


@rules_app.command("show")
def rules_show(model: str, as_json: JsonOption = False) -> None:
    """The alert rules in force for MODEL."""
    from vitalops.monitoring.alert_rules import get_rules

    database = open_database()
    document = get_rules(database, cli_principal(database), model).model_dump(mode="json")

    def render(value: dict[str, Any]) -> None:
        console.print(key_value_table({k: value[k] for k in ("model", "number", "spec_hash", "created_by",
                                                              "created_at")}))
        rows = [{**r, "sites": r["sites"] or "all", "when": f"{r['comparison']} {r['threshold']:g}"}
                for r in value["rules"]]
        console.print(rows_table(rows, ["id", "metric", "window", "when", "min_n", "severity", "action", "sites"]))

    emit(document, as_json, render)


@alerts_app.command("evaluate")
def alerts_evaluate(model: str, as_json: JsonOption = False) -> None:
    """Judge MODEL's rules against its newest monitoring results now ('vitalops monitor run' does it too)."""
    from vitalops.monitoring.alerts import evaluate_alerts

    database = open_database()
    summary = evaluate_alerts(database, cli_principal(database), model)

    def render(value: dict[str, Any]) -> None:
        # insufficient data shows no number
        judged = [{**j, "value": _value(j["value"]), "window": str(j["window_start"])[:16]} for j in value["judged"]]
        console.print(rows_table(judged, ["rule", "metric", "version", "site", "window", "n", "value", "state"],
                                 title=f"{model}: rule set {value['rule_set']}"))
        insufficient = sum(j["state"] == "insufficient_data" for j in judged)
        console.print(f"{len(value['opened'])} opened, {len(value['repeated'])} repeated, "
                      f"{insufficient} with insufficient data")

    emit(summary, as_json, render)


@alerts_app.command("list")
def alerts_list(
    model: Annotated[str | None, typer.Option("--model", help="One model.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="open, acknowledged or resolved.")] = None,
    site: Annotated[str | None, typer.Option("--site", help="One site.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many, newest first.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Alerts, newest first."""
    from vitalops.monitoring.alerts import list_alerts

    database = open_database()
    alerts = [a.model_dump(mode="json") for a in list_alerts(database, cli_principal(database), model=model,
                                                             state=state, site=site, limit=limit)]
    emit(alerts, as_json, render_alerts)


@alerts_app.command("ack")
def alerts_ack(alert_id: int, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Acknowledge open alert ALERT_ID; operators."""
    from vitalops.monitoring.alerts import acknowledge_alert

    database = open_database()
    alert = acknowledge_alert(database, cli_principal(database), alert_id, reason=reason)
    emit(alert.model_dump(mode="json"), as_json, lambda a: render_alerts([a]))


@alerts_app.command("resolve")
def alerts_resolve(alert_id: int, reason: ReasonOption, as_json: JsonOption = False) -> None:
    """Resolve alert ALERT_ID (open or acknowledged); operators."""
    from vitalops.monitoring.alerts import resolve_alert

    database = open_database()
    alert = resolve_alert(database, cli_principal(database), alert_id, reason=reason)
    emit(alert.model_dump(mode="json"), as_json, lambda a: render_alerts([a]))


def render_incidents(incidents: list[dict[str, Any]]) -> None:
    console.print(rows_table([{**i, "opened": i["opened_at"][:16]} for i in incidents],
                             ["id", "state", "kind", "model", "title", "alerts", "opened", "opened_by"]))


@incidents_app.command("open")
def incidents_open(
    alert: Annotated[int, typer.Option("--alert", help="The alert the incident is about.")],
    title: Annotated[str | None, typer.Option("--title", help="A title (default: the alert's summary).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Open an incident around an alert; operators."""
    from vitalops.monitoring.incidents import open_incident

    database = open_database()
    incident = open_incident(database, cli_principal(database), alert, title=title)
    emit(incident.model_dump(mode="json"), as_json, lambda i: render_incidents([i]))


@incidents_app.command("list")
def incidents_list(
    model: Annotated[str | None, typer.Option("--model", help="One model.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="open or closed.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Incidents, newest first."""
    from vitalops.monitoring.incidents import list_incidents

    database = open_database()
    incidents = list_incidents(database, cli_principal(database), model=model, state=state)
    emit([i.model_dump(mode="json") for i in incidents], as_json, render_incidents)


@incidents_app.command("show")
def incidents_show(incident_id: int, as_json: JsonOption = False) -> None:
    """An incident and its timeline: its alerts, what was done, and the model's audit events around it."""
    from vitalops.monitoring.incidents import show_incident

    database = open_database()
    document = show_incident(database, cli_principal(database), incident_id)

    def render(value: dict[str, Any]) -> None:
        incident = value["incident"]
        console.print(key_value_table({k: incident[k] for k in ("id", "state", "kind", "model", "title", "alerts",
                                                                 "opened_at", "opened_by", "closed_at", "findings")}))
        rows = [{**e, "at": str(e["at"])[:19]} for e in value["timeline"]]
        console.print(rows_table(rows, ["at", "actor", "action", "object", "details"], title="Timeline"))

    emit(document, as_json, render)


@incidents_app.command("close")
def incidents_close(
    incident_id: int,
    findings: Annotated[str, typer.Option("--findings", help="The post-incident review's findings.")],
    as_json: JsonOption = False,
) -> None:
    """Close incident INCIDENT_ID with the post-incident review's findings; operators."""
    from vitalops.monitoring.incidents import close_incident

    database = open_database()
    incident = close_incident(database, cli_principal(database), incident_id, findings=findings)
    emit(incident.model_dump(mode="json"), as_json, lambda i: render_incidents([i]))


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(incidents_app, name="incidents")
