"""``vitalops quality report [--batch ID]``: data quality per site, as tables or JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, rows_table


def render_quality_report(report: dict[str, Any]) -> None:
    scope = f"batch {report['batch_id']}" if report["batch_id"] else "whole lake"
    rows = []
    for site in report["sites"]:
        implausible = sum(v["out_of_range"] for v in site["implausible"].values())
        rows.append(
            {
                "site": site["site"],
                "facts": site["facts"],
                "patients": site["patients"],
                "quarantined": sum(site["quarantined"].values()),
                "implausible": implausible,
                "future dates": site["future_dates"],
                "impossible dates": site["impossible_dates"],
                "unknown patients": site["unknown_patients"],
                "unmapped codes": sum(c["facts"] for c in site["unmapped_codes"]),
                "codes absent": site["codes_absent"],
                "birth years": _years(site["birth_years"]),
                "latest known": site["freshness"].get("latest_known_day"),
            }
        )
    columns = [
        "site",
        "facts",
        "patients",
        "quarantined",
        "implausible",
        "future dates",
        "impossible dates",
        "unknown patients",
        "unmapped codes",
        "codes absent",
        "birth years",
        "latest known",
    ]
    console.print(rows_table(rows, columns, title=f"Data quality ({scope}; duplicates: {report['duplicates']})"))
    console.print(
        f"Dates of birth are shown as years; no figure rests on fewer than {report['minimum_patients']} patients "
        "(such figures are left blank)."
    )
    rules = [
        {"site": site["site"], "rule": rule, "records": count}
        for site in report["sites"]
        for rule, count in site["quarantined"].items()
    ]
    if rules:
        console.print(rows_table(rules, ["site", "rule", "records"], title="Quarantine by rule"))
    ranges = [
        {"site": site["site"], "concept": concept, **figures}
        for site in report["sites"]
        for concept, figures in site["implausible"].items()
        if figures["out_of_range"]
    ]
    if ranges:
        console.print(
            rows_table(
                ranges,
                ["site", "concept", "facts", "out_of_range", "low", "high"],
                title="Values outside plausible ranges",
            )
        )


def _years(birth_years: dict[str, Any]) -> str | None:
    if not birth_years or birth_years.get("first_year") is None:
        return None
    return f"{birth_years['first_year']} - {birth_years['last_year']}"


def register(app: typer.Typer) -> None:
    quality = typer.Typer(help="Data quality of ingested facts.", no_args_is_help=True)
    app.add_typer(quality, name="quality")

    @quality.command("report")
    def report(
        batch: Annotated[str | None, typer.Option("--batch", help="One ingest batch id.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Required fields, plausible ranges, dates, duplicates, units, unmapped codes, completeness, freshness."""
        from vitalops.quality.report import quality_report

        settings = cli_settings()
        database = open_database(settings)
        principal = cli_principal(database, settings)
        result = quality_report(database, settings.lake_root, batch_id=batch, principal=principal)
        emit(result.to_dict(), as_json, render_quality_report)
