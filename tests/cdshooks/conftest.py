"""A served deterioration model behind the API, a trusted demo EHR, and a FHIR server double on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from tests.cdshooks.spec_client import EhrKeys
from tests.conftest import LiveServer
from tests.features.conftest import demo_sets, hospital_lake  # noqa: F401 - fixtures
from tests.governance.plans import register_sites  # noqa: F401
from tests.serving.conftest import Served, served  # noqa: F401 - fixtures
from vitalops.auth import SYSTEM
from vitalops.cdshooks import add_client
from vitalops.cdshooks.prefetch import matches


@dataclass
class Cds:
    served: Served
    client: httpx.Client
    app: Any
    base: str
    ehr: EhrKeys
    patient_id: str
    resources: list[dict[str, Any]]
    other_patient: dict[str, Any]

    def post(self, path: str, body: Any, *, token: str | None = None) -> Any:
        token = token or self.ehr.token(self.base + path)
        return self.client.post(path, content=orjson.dumps(body), headers={"Authorization": f"Bearer {token}",
                                                                           "Content-Type": "application/json"})

    def get(self, path: str, *, token: str | None = None) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {token or self.ehr.token(self.base + path)}"})


def _subject(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return reference.rsplit("/", 1)[-1] or None


@pytest.fixture
def cds(served: Served, settings) -> Iterator[Cds]:  # noqa: F811
    ehr = EhrKeys()
    with served.database.session() as session:
        add_client(session, SYSTEM, ehr.issuer, site="north", jwks=ehr.jwks)
    patients = [r for r in served.lake.resources if r["resourceType"] == "Patient"]
    counts: dict[str, int] = {}
    for resource in served.lake.resources:
        subject = _subject(resource)
        if subject is not None:
            counts[subject] = counts.get(subject, 0) + 1
    patient_id = max(counts, key=lambda p: counts[p])
    mine = [r for r in served.lake.resources if _subject(r) == patient_id]
    other = next(p for p in patients if p["id"] != patient_id)
    with LiveServer(settings, served.database) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        app = server.server.config.app
        app.state.serving = served.context
        yield Cds(served, client, app, server.url, ehr, patient_id, mine, other)


def prefetch_for(templates: dict[str, str], resources: list[dict[str, Any]], patient_id: str) -> dict[str, Any]:
    """What a CDS client sends for each template: the Patient, or a searchset Bundle."""
    context = {"patientId": patient_id, "userId": "Practitioner/1"}
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        found = [r for r in resources if matches(template, r, context)]
        if "?" not in template:
            prefetch[key] = found[0] if found else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                             "entry": [{"resource": r} for r in found]}
    return prefetch


class FhirDouble:
    """A FHIR server on loopback answering reads and searches over a list of resources, with a bearer token.

    With ``page_size``, a search answers that many entries a page and links the next page
    (``Bundle.link`` relation ``next``, offset in ``_getpagesoffset`` as HAPI FHIR does), on
    ``next_origin`` when given (a server that points its pages elsewhere) or on itself."""

    def __init__(self, resources: list[dict[str, Any]], token: str, *, page_size: int | None = None,
                 next_origin: str | None = None) -> None:
        double = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                double.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                path = unquote(self.path.lstrip("/"))
                search, _, offset_text = path.partition("&_getpagesoffset=")
                found = [r for r in resources if matches(search, r, {})]
                if "?" not in search:
                    body: Any = found[0] if found else None
                    status = 200 if found else 404
                else:
                    offset = int(offset_text or 0)
                    page = found[offset:offset + page_size] if page_size else found
                    body, status = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                                    "link": [{"relation": "self", "url": f"{double.url}/{path}"}],
                                    "entry": [{"resource": r} for r in page]}, 200
                    if page_size and offset + page_size < len(found):
                        origin = next_origin or double.url
                        body["link"].append({"relation": "next", "url": f"{origin}/{search}&_getpagesoffset="
                                                                         f"{offset + page_size}"})
                payload = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
