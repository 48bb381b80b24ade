"""``vitalops predict``: score one patient with the model deployed at a site, and show the reasons."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from vitalops.cli.context import cli_principal, cli_settings, open_database
from vitalops.cli.output import JsonOption, console, emit, key_value_table, rows_table
from vitalops.errors import InvalidInput


def _read_resources(folder: Path) -> list[dict[str, Any]]:
    """Every resource in ``folder``'s ``*.ndjson`` and ``*.json`` files (a Bundle's entries included)."""
    if not folder.is_dir():
        raise InvalidInput(f"--fhir {folder}: not a folder", details={"field": "fhir"})
    resources: list[dict[str, Any]] = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".ndjson":
            with path.open("rb") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        try:
                            resources.append(orjson.loads(line))
                        except orjson.JSONDecodeError:
                            raise InvalidInput(f"{path.name} line {number}: not JSON") from None
        elif path.suffix == ".json":
            try:
                document = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                raise InvalidInput(f"{path.name}: not JSON") from None
            if isinstance(document, dict) and document.get("resourceType") == "Bundle":
                resources.extend(e["resource"] for e in document.get("entry", []) if isinstance(e, dict)
                                 and isinstance(e.get("resource"), dict))
            elif isinstance(document, dict):
                resources.append(document)
    return resources


def render_prediction(result: dict[str, Any]) -> None:
    """The risk, band and decision, then the factors and counterfactuals as tables."""
    console.print(key_value_table({
        "model": f"{result['model']} v{result['version']} ({result['mode']} at {result['site']})",
        "risk": f"{result['score']:.1%} ({result['band']})",
        "flagged": "yes" if result["decision"] else "no",
        "threshold": f"{result['threshold']:.3f}",
        "prediction": result["id"],
    }))
    explanation = result["explanation"]
    factors = [{"factor": f["feature"], "value": "" if f["value"] is None else f"{f['value']:.4g}",
                "unit": f["unit"] or "", "log-odds": f"{f['contribution']:+.3f}"} for f in explanation["factors"]]
    console.print(rows_table(factors, ["factor", "value", "unit", "log-odds"],
                             title=f"top factors ({explanation['method']})"))
    if explanation["counterfactuals"]:
        rows = [{"factor": c["feature"], "now": f"{c['value']:.4g}", "normal": f"{c['normal_value']:.4g}",
                 "unit": c["unit"] or "", "risk if normal": f"{c['risk_if_normal']:.1%}"}
                for c in explanation["counterfactuals"]]
        console.print(rows_table(rows, ["factor", "now", "normal", "unit", "risk if normal"],
                                 title="counterfactuals"))


def predict_command(
    name: str,
    site: Annotated[str, typer.Option("--site", help="The site whose deployments score")],
    patient: Annotated[str | None, typer.Option("--patient", help="A pseudonymous patient key")] = None,
    fhir: Annotated[Path | None, typer.Option("--fhir", help="A folder of one patient's FHIR resources")] = None,
    at: Annotated[datetime | None, typer.Option("--at", help="Score as of this moment (default: now)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score one patient (by key, or from FHIR files) and print the risk, band and reasons."""
    from vitalops.serving import PredictionRequest, predict
    from vitalops.serving.service import default_context

    if (patient is None) == (fhir is None):
        raise InvalidInput("give exactly one of --patient or --fhir", details={"field": "patient"})
    settings = cli_settings()
    database = open_database(settings)
    actor = cli_principal(database, settings)
    resources = None if fhir is None else _read_resources(fhir)
    request = PredictionRequest(site=site, patient_key=patient, resources=resources, at=at)
    outcome = predict(database, default_context(settings), actor, name, request)
    outcome.run_deferred()
    emit(outcome.prediction.model_dump(mode="json"), as_json, render_prediction)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
