"""``vitalops monitor run`` and ``vitalops monitor show``: compute every metric for each complete
window, and read the latest value and flag of each; ``vitalops monitor retrain`` carries out the
retraining requests alerts recorded, and ``vitalops monitor retraining`` lists them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table


def _number(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def render_run(summary: dict[str, Any]) -> None:
    for model in summary["models"]:
        statuses = model["statuses"]
        console.print(f"{model['model']}: {model['windows']} windows of {summary['window']} from {model['since']} "
                      f"to {model['until']}: {model['results']} results, {statuses['ok']} ok, "
                      f"{statuses['insufficient_data']} with too few rows to judge, {statuses['flagged']} flagged",
                      highlight=False)
    console.print(rows_table(flagged_summary(summary["flagged"]), ["metric", "site", "version", "windows", "of"],
                             title=f"{len(summary['flagged'])} flagged") if summary["flagged"] else "nothing flagged")


def flagged_summary(flagged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flagged results folded per metric family, site and version: which windows, which features."""
    groups: dict[tuple[str, str, int], dict[str, set[str]]] = {}
    for row in flagged:
        family, _, argument = row["metric_id"].partition("/")
        group = groups.setdefault((family, row["site"], row["version"]), {"windows": set(), "of": set()})
        group["windows"].add(row["window_start"][:10])
        if argument:
            group["of"].add(argument)
    return [{"metric": family, "site": site, "version": version, "windows": sorted(group["windows"]),
             "of": f"{len(group['of'])}: " + ", ".join(sorted(group["of"])[:4]) + (", ..." if len(group["of"]) > 4
                                                                                   else "") if group["of"] else ""}
            for (family, site, version), group in sorted(groups.items())]


def render_show(document: dict[str, Any]) -> None:
    rows = [{"metric": r["metric_id"], "version": r["version"], "site": r["site"],
             "window": f"{r['window_start'][:16]} - {r['window_end'][:16]}", "value": _number(r["value"]),
             "n": r["n"], "status": r["status"]} for r in document["results"]]
    console.print(rows_table(rows, ["metric", "version", "site", "window", "value", "n", "status"],
                             title=f"Latest monitoring results of {document['model']}"))


def render_requests(requests: list[dict[str, Any]], title: str) -> None:
    rows = [{"id": r["id"], "model": r["model"], "from": r["base_version"], "site": r["site"], "state": r["state"],
             "candidate": r["candidate_version"], "check": r["check_status"],
             "until or why": (r["shadow_until"] or "")[:10] or ", ".join(r["failed_criteria"]) or r["reason"] or ""}
            for r in requests]
    console.print(rows_table(rows, ["id", "model", "from", "site", "state", "candidate", "check", "until or why"],
                             title=title) if rows else f"{title}: none")


def register(app: typer.Typer) -> None:
    monitor = typer.Typer(help="Monitoring: data quality, drift, performance and operations per window.",
                          no_args_is_help=True)
    app.add_typer(monitor, name="monitor")

    @monitor.command("run")
    def run(
        model: Annotated[str | None, typer.Option("--model", help="One model (default: every model).")] = None,
        site: Annotated[str | None, typer.Option("--site", help="One site (default: every site).")] = None,
        window: Annotated[str, typer.Option("--window", help="Window length: 1d, 7d, 6h.")] = "1d",
        since: Annotated[str | None, typer.Option("--since", help="From this time (ISO; default: the first "
                                                  "prediction).")] = None,
        until: Annotated[str | None, typer.Option("--until", help="Up to this time (ISO; default: now).")] = None,
        engine: Annotated[str, typer.Option("--engine", help="Aggregate in this process (local) or on Dask.")
                          ] = "local",
        scheduler: Annotated[str | None, typer.Option("--scheduler", help="The Dask scheduler's address.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Compute every metric for each complete window; a window computed again changes nothing."""
        from vitalops.artifacts import open_store
        from vitalops.cli.audit_cmd import parse_time
        from vitalops.monitoring.engine import parse_window, run_monitoring

        length = parse_window(window)
        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        summary = run_monitoring(
            database, principal, lake_root=settings.lake_root, store=open_store(settings.artifacts_root),
            model=model, site=site, window=length, since=None if since is None else parse_time(since, "--since"),
            until=None if until is None else parse_time(until, "--until"), engine=engine, scheduler=scheduler,
        )
        from vitalops.cli.alerts_cmd import render_evaluations
        from vitalops.monitoring.alerts import evaluate_after_run

        summary["alerts"] = evaluate_after_run(database, principal, summary, settings=settings)

        def render(value: dict[str, Any]) -> None:
            render_run(value)
            render_evaluations(value["alerts"])

        emit(summary, as_json, render)

    @monitor.command("show")
    def show(
        model: Annotated[str, typer.Option("--model", help="The model.")],
        metric: Annotated[str | None, typer.Option("--metric", help="A metric id, or a family for all of its "
                                                   "features.")] = None,
        site: Annotated[str | None, typer.Option("--site", help="One site.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """The latest window's value and status of each metric, version and site."""
        from vitalops.monitoring.results import query_results

        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        results = query_results(database, principal, model=model, metric_id=metric, site=site, latest=True)
        emit({"model": model, "results": [r.model_dump(mode="json") for r in results]}, as_json, render_show)

    @monitor.command("retrain")
    def retrain(
        model: Annotated[str | None, typer.Option("--model", help="One model (default: every model).")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Carry out the pending retraining requests: train on fresh data, gate, deploy a pass as a shadow."""
        from vitalops.monitoring.retraining import run_retraining, summary

        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        ran = summary(run_retraining(database, principal, model=model, settings=settings))
        emit(ran, as_json, lambda value: render_requests(value["requests"], f"{value['ran']} retraining requests run"))

    @monitor.command("retraining")
    def retraining(
        model: Annotated[str | None, typer.Option("--model", help="One model.")] = None,
        state: Annotated[str | None, typer.Option("--state", help="pending, running, shadow, passed, gate_failed, "
                                                  "refused or failed.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """The retraining requests, newest first, with each candidate, its check and its outcome."""
        from vitalops.monitoring.retraining_requests import list_retraining_requests

        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        requests = list_retraining_requests(database, principal, model=model, state=state)
        emit({"requests": [r.model_dump(mode="json") for r in requests]}, as_json,
             lambda value: render_requests(value["requests"], "Retraining requests"))
