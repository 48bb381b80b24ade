"""``vitalops scenarios``: the synthetic hospital's scenarios replayed through monitoring, in a home
of their own (``vitalops.monitoring.scenario_replay``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vitalops.cli.output import JsonOption, console, emit, progress_bar, rows_table
from vitalops.errors import Conflict

#: Metrics shown per site in the table (the JSON has every one).
_SHOWN = 4


def render_replay(result: dict[str, Any]) -> None:
    """The replay as people read it: per site its scenario, what flagged first, its alerts; then retraining."""
    alerts: dict[str, list[str]] = {}
    for alert in result["alerts"]:
        alerts.setdefault(alert["site"], []).append(alert["rule"])
    rows = []
    for site, scenario in result["sites"].items():
        caught = [c for c in result["caught"].get(site, []) if not c["before_change"]]
        shown = ", ".join(f"{c['metric']} ({c['window']}, {c['first'][5:]})" for c in caught[:_SHOWN])
        more = f" and {len(caught) - _SHOWN} more" if len(caught) > _SHOWN else ""
        early = sum(c["before_change"] for c in result["caught"].get(site, []))
        rows.append({"site": site, "scenario from " + result["change_date"]: scenario or "none (control)",
                     "flagged after the change (window, first)": (shown + more) or "nothing",
                     "flagged before it": early,
                     "alerts": ", ".join(f"{rule} x{alerts[site].count(rule)}" for rule in sorted(set(alerts[site])))
                     if site in alerts else "none"})
    console.print(rows_table(rows, list(rows[0]), title=f"Replayed {result['replayed']['since']} to "
                             f"{result['replayed']['until']}: version {result['version']} champion at every site"))
    for request in result["retraining"]:
        criteria = ", ".join(request.get("failed_criteria") or []) or "none"
        console.print(f"Retraining request {request['id']} (alert at {request['site']}): candidate "
                      f"v{request['candidate_version']} {request['state'].replace('_', ' ')}; failed criteria: "
                      f"{criteria}. Nothing is promoted by itself.", soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("scenarios")
    def scenarios(
        patients: Annotated[int, typer.Option("--patients", min=500, max=50_000,
                                              help="Simulated patients (at 8 times the usual admission rate).")]
        = 3000,
        as_json: JsonOption = False,
    ) -> None:
        """Replay the synthetic hospital's scenarios (one per site, a control site beside them)
        through training, the gate, daily monitoring, alerts and retraining, in this home (which
        must hold no model yet). Takes a few minutes."""
        from vitalops.cli.context import open_database
        from vitalops.cli.demo_cmd import ensure_demo_users
        from vitalops.cli.init_cmd import initialize
        from vitalops.core.settings import get_settings, home_from_environment
        from vitalops.monitoring.scenario_replay import Staff, replay_scenarios
        from vitalops.registry.versions import list_models

        initialize(home_from_environment())
        settings = get_settings()
        database = open_database(settings)
        with database.read_session() as session:
            if list_models(session):
                raise Conflict("this home already holds models: replay the scenarios in a home of their own "
                               "(VITALOPS_HOME=<an empty folder> vitalops scenarios)")
        staff, _ = ensure_demo_users(database)
        with progress_bar(not as_json) as bar:
            task = bar.add_task("replaying", total=None)
            result = replay_scenarios(database, settings, Staff(staff["dana"], (staff["alex"], staff["blake"]),
                                                                staff["omar"]),
                                      patients=patients, progress=lambda message: bar.update(task, description=message))
        emit(result, as_json, render_replay)
