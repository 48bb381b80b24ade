"""``vitalops synth OUT --patients N --sites A,B,C --seed S``: write the synthetic hospital's bulk export."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.output import JsonOption, console, emit, key_value_table, progress_bar, rows_table
from vitalops.errors import InvalidInput
from vitalops.synth import SCENARIOS


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} '{value}' is not a date (YYYY-MM-DD)") from None


def _render(result: dict[str, Any]) -> None:
    from vitalops.synth import RESOURCE_TYPES

    sites = list(result["per_site"])
    rows = [
        {
            "resource": kind,
            **{site: result["per_site"][site][kind] for site in sites},
            "total": result["resources"][kind],
        }
        for kind in RESOURCE_TYPES
    ]
    console.print(rows_table(rows, ["resource", *sites, "total"], title=f"Synthetic hospital in {result['out_dir']}"))
    truth = result["ground_truth"]
    console.print(
        key_value_table(
            {
                "scenario": result["scenario"] or "none",
                "change date": result["change_date"] or "-",
                "inpatient stays": truth["inpatient_stays"],
                "deterioration rate": truth["deterioration_rate"],
                "30-day readmission rate": truth["readmission_rate"],
                "planted identifiers": result["planted_identifiers"],
            }
        )
    )


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        out: Annotated[Path, typer.Argument(help="Folder to write the NDJSON files into.")],
        patients: Annotated[int, typer.Option("--patients", help="Number of patients.")] = 200,
        sites: Annotated[str, typer.Option("--sites", help="Comma-separated site names.")] = "north,south,east",
        seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same bytes.")] = 7,
        scenario: Annotated[str | None, typer.Option(
            "--scenario", help=f"One of: {', '.join(SCENARIOS)}; or NAME@SITE items, comma-separated, to place "
            "scenarios at sites (the other sites unchanged).")] = None,
        start: Annotated[str | None, typer.Option("--start", help="First day (YYYY-MM-DD).")] = None,
        end: Annotated[str | None, typer.Option("--end", help="Last day (YYYY-MM-DD).")] = None,
        defects: Annotated[
            bool, typer.Option("--defects", help="Plant a few realistic feed defects into the last site.")
        ] = False,
        admission_scale: Annotated[float, typer.Option(
            "--admission-scale", help="Multiply every patient's admission rate (more inpatient-days from fewer "
            "patients).")] = 1.0,
        warmup_days: Annotated[int, typer.Option(
            "--warmup-days", min=0, max=3650, help="Start the admission process this many days before the "
            "period (nothing of it is written), so the period opens in steady state.")] = 0,
        as_json: JsonOption = False,
    ) -> None:
        """Write a synthetic multi-site hospital as FHIR R4 bulk NDJSON, with ground truth."""
        from vitalops.synth import DEFAULT_END, DEFAULT_START, generate_hospital
        from vitalops.synth.hospital import check_arguments

        site_names = [name.strip() for name in sites.split(",") if name.strip()]
        first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
        check_arguments(
            patients=patients,
            sites=site_names,
            seed=seed,
            scenario=scenario,
            start=first or DEFAULT_START,
            end=last or DEFAULT_END,
        )
        with progress_bar(enabled=not as_json) as progress:
            task = progress.add_task("patients", total=patients)
            summary = generate_hospital(
                out,
                patients=patients,
                sites=site_names,
                seed=seed,
                scenario=scenario,
                start=first,
                end=last,
                progress=lambda done: progress.update(task, completed=done),
                defects=defects,
                admission_scale=admission_scale,
                warmup_days=warmup_days,
            )
        emit(summary.to_dict(), as_json, _render)
