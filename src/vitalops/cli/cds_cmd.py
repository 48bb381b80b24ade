"""``vitalops cds call``: call a CDS service as a trusted EHR, and show the cards as the EHR would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from vitalops.cli.output import JsonOption, console, print_json
from vitalops.errors import InvalidInput

cds_app = typer.Typer(help="CDS Hooks as an EHR calls them: signed calls to the running server, cards shown.",
                      no_args_is_help=True)

DEFAULT_URL = "http://127.0.0.1:8000"
_STYLES = {"info": "blue", "warning": "yellow", "critical": "red"}


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("--at must be an ISO date-time with its offset, e.g. 2024-03-05T10:00:00Z",
                           details={"field": "at"}) from None
    if moment.tzinfo is None:
        raise InvalidInput("--at needs an offset (Z or +HH:MM)", details={"field": "at"})
    return moment


def render_card(card: dict[str, Any]) -> None:
    """One card as an EHR shows it: summary and indicator, the detail as Markdown, its source, the
    suggestions to accept and the reasons offered to override it."""
    from rich.markdown import Markdown
    from rich.panel import Panel

    indicator = str(card.get("indicator", "info"))
    style = _STYLES.get(indicator, "white")
    console.print(Panel(Markdown(str(card.get("detail", ""))), title=f"[bold]{card.get('summary', '')}",
                        subtitle=f"{indicator.upper()}", border_style=style, title_align="left"))
    source = card.get("source") or {}
    console.print(f"Source: {source.get('label', '')}" + (f" ({source['url']})" if source.get("url") else ""),
                  highlight=False)
    for suggestion in card.get("suggestions") or []:
        recommended = " (recommended)" if suggestion.get("isRecommended") else ""
        console.print(f"Suggestion ({card.get('selectionBehavior', '')}): {suggestion.get('label', '')}{recommended}",
                      highlight=False)
        for action in suggestion.get("actions") or []:
            console.print(f"  {action.get('type', '')}: {action.get('description', '')}", highlight=False)
    reasons = card.get("overrideReasons") or []
    if reasons:
        console.print("Override reasons:", highlight=False)
        for reason in reasons:
            console.print(f"  - {reason.get('display', '')} [dim]({reason.get('code', '')})[/]", highlight=False)
    for link in card.get("links") or []:
        console.print(f"Link: {link.get('label', '')} {link.get('url', '')}", highlight=False)
    console.print(f"[dim]card {card.get('uuid', '')}[/]", highlight=False)


@cds_app.command("call")
def cds_call(
    service: str,
    patient: Annotated[str, typer.Option("--patient", help="The FHIR Patient id (context.patientId)")],
    fhir: Annotated[Path, typer.Option("--fhir", help="A folder (or file) of FHIR R4 NDJSON or Bundles")],
    url: Annotated[str, typer.Option("--url", help="The VitalOps server's base URL")] = DEFAULT_URL,
    client: Annotated[Path | None, typer.Option(
        "--client", help="The EHR client file (default $VITALOPS_HOME/demo/ehr-client.json)")] = None,
    user: Annotated[str, typer.Option("--user", help="context.userId")] = "Practitioner/demo",
    at: Annotated[str | None, typer.Option(
        "--at", help="Replay the files as of this past moment (ISO, with offset): what was known then, "
                     "its times moved so that moment is now")] = None,
    as_json: JsonOption = False,
) -> None:
    """Call SERVICE for a patient as the EHR of the client file, with a prefetch built from FHIR files."""
    from vitalops.cdshooks.ehr import (
        DEMO_CLIENT_FILE,
        CdsClient,
        EhrCredentials,
        build_prefetch,
        hook_request,
        patient_resources,
        replay_at,
    )
    from vitalops.core.settings import home_from_environment

    moment = _moment(at)
    if not url.startswith(("http://", "https://")):
        raise InvalidInput("--url must be an http(s) URL", details={"field": "url"})
    credentials = EhrCredentials.read(client or home_from_environment() / DEMO_CLIENT_FILE)
    resources = patient_resources(fhir, [patient])[patient]
    if not any(r.get("resourceType") == "Patient" for r in resources):
        raise InvalidInput(f"no Patient with that id in {fhir}", details={"field": "patient"})
    if moment is not None:
        resources = replay_at(resources, moment, datetime.now(UTC))
    with CdsClient(url, credentials) as cds:
        templates = cds.service(service).get("prefetch") or {}
        context = {"patientId": patient, "userId": user}
        response = cds.call(service, hook_request(patient, user, build_prefetch(templates, resources, context)))
    if as_json:
        print_json(response)
        return
    cards = response.get("cards") or []
    if not cards:
        console.print(f"No card for this patient from '{service}' (nothing to show at this site, or held for "
                      "clinician review).", highlight=False)
    for card in cards:
        render_card(card)


def register(app: typer.Typer) -> None:
    app.add_typer(cds_app, name="cds")
