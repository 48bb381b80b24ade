"""Prefetch: the templates a model's features need, the resources a request brings, and the FHIR
server fallback.

Templates (CDS Hooks 2.0.1, "Prefetch Template") use only instance reads and type searches with a
patient reference, token equality (``code=<system>|<code>,...``), a ``date`` with a ``ge`` prefix and
the tokens ``{{context.patientId}}`` and ``{{context.userId}}``. The specification has no relative
date token, so the ``ge`` bound is a literal date written when discovery is answered: the day
``now - lookback`` began (UTC). A client that caches discovery therefore fetches *more* than the
lookback as days pass, never less; the feature definitions apply the exact windows themselves.

Every resource given (prefetched or fetched) must belong to the patient in ``context``: a Patient
whose ``id`` is ``context.patientId``, or a resource whose ``subject`` (or ``patient``) references
it. Anything else is refused with BadRequest naming the prefetch key, before anything is scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from vitalops.errors import BadRequest, PreconditionFailed
from vitalops.features.definitions import (
    ConditionFeature,
    DatasetSpec,
    MeasurementFeature,
    MedicationFeature,
    UtilizationFeature,
    parse_duration,
)
from vitalops.ingest.extract_common import Rejected, Skipped, reference_id
from vitalops.terminology import LOINC, Terminology

PATIENT_TOKEN = "{{context.patientId}}"  # noqa: S105 - a prefetch token, not a secret
USER_TOKEN = "{{context.userId}}"  # noqa: S105 - a prefetch token, not a secret
#: The tokens our templates use; the specification allows these for ``patient-view``.
ALLOWED_TOKENS = (PATIENT_TOKEN, USER_TOKEN)
#: Observation kinds of the terminology, grouped into one prefetch key each.
OBSERVATION_KEYS = {"vital": "vitals", "lab": "labs", "observation": "observations"}
#: Encounters are fetched for the length of stay and utilization over at least this long.
ENCOUNTER_LOOKBACK = timedelta(days=30)
#: A FHIR server that does not answer within this is treated as unreachable (412).
FHIR_TIMEOUT_S = 2.0
#: At most this many resources per prefetch key are scored (a very long history is refused, not truncated).
MAX_RESOURCES_PER_KEY = 5000
#: At most this many pages of one search are fetched from the FHIR server (Bundle ``next`` links).
MAX_PAGES = 20


@dataclass(frozen=True)
class Template:
    """One prefetch template: its key, its resource type and query, and the lookback it stands for."""

    key: str
    resource_type: str
    codes: tuple[str, ...] = ()  # ``system|code``
    lookback: timedelta | None = None
    read: bool = False  # an instance read (``Patient/{{context.patientId}}``)

    def render(self, now: datetime) -> str:
        """The template as discovery publishes it (the date bound written for ``now``)."""
        if self.read:
            return f"{self.resource_type}/{PATIENT_TOKEN}"
        query = f"{self.resource_type}?patient={PATIENT_TOKEN}"
        if self.codes:
            query += "&code=" + ",".join(self.codes)
        if self.lookback is not None:
            start = (now - self.lookback).date().isoformat()
            query += f"&date=ge{start}"
        return query


def templates_for(spec: DatasetSpec, terminology: Terminology) -> list[Template]:
    """The templates ``spec``'s features need: the Patient always (age, sex, the subject), Observations
    by the LOINC codes of their concepts within the longest window per kind, and Conditions,
    MedicationRequests and Encounters when features read them (Encounters always: the length of stay
    and the stay the score belongs to)."""
    templates = [Template("patient", "Patient", read=True)]
    by_kind: dict[str, tuple[set[str], timedelta]] = {}
    lookback = timedelta(0)
    conditions = medications = False
    for feature in spec.features:
        window = getattr(feature, "window", None)
        if window is not None:
            lookback = max(lookback, parse_duration(window))
        if isinstance(feature, MeasurementFeature):
            concept = terminology.concept(feature.concept)
            codes, longest = by_kind.get(concept.kind, (set(), timedelta(0)))
            codes.update(f"{LOINC}|{code}" for system, code in terminology.codes_for(feature.concept)
                         if system == LOINC)
            by_kind[concept.kind] = (codes, max(longest, parse_duration(feature.window)))
        elif isinstance(feature, ConditionFeature):
            conditions = True
        elif isinstance(feature, MedicationFeature):
            medications = True
        elif isinstance(feature, UtilizationFeature):
            lookback = max(lookback, parse_duration(feature.window))
    for kind in sorted(by_kind):
        codes, longest = by_kind[kind]
        templates.append(Template(OBSERVATION_KEYS.get(kind, kind), "Observation", tuple(sorted(codes)), longest))
    if conditions:
        templates.append(Template("conditions", "Condition"))
    if medications:
        templates.append(Template("medications", "MedicationRequest"))
    templates.append(Template("encounters", "Encounter", lookback=max(lookback, ENCOUNTER_LOOKBACK)))
    return templates


def merge_templates(groups: Iterable[list[Template]]) -> list[Template]:
    """One template per key over several versions' needs (codes united, the longest lookback)."""
    merged: dict[str, Template] = {}
    for templates in groups:
        for template in templates:
            seen = merged.get(template.key)
            if seen is None:
                merged[template.key] = template
                continue
            lookbacks = [t for t in (seen.lookback, template.lookback) if t is not None]
            merged[template.key] = Template(
                template.key, template.resource_type, tuple(sorted(set(seen.codes) | set(template.codes))),
                max(lookbacks) if lookbacks else None, template.read,
            )
    return list(merged.values())


def owned_by(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when ``resource`` is the patient ``patient_id`` or references them as subject (or patient),
    by the same reference rules ingest keys patients on."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    reference = resource.get("subject") or resource.get("patient")
    try:
        return reference_id(reference, "Patient") == patient_id
    except (Rejected, Skipped):
        return False


def resources_of(key: str, value: Any, patient_id: str) -> list[dict[str, Any]]:
    """The resources of one prefetch value (a resource, a searchset Bundle's entries, or null), each
    checked to belong to ``patient_id``. BadRequest naming ``prefetch.<key>`` otherwise."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise BadRequest(f"prefetch '{key}' is not a FHIR resource or Bundle", details={"field": f"prefetch.{key}"})
    if value["resourceType"] == "Bundle":
        entries = value.get("entry") or []
        if not isinstance(entries, list):
            raise BadRequest(f"prefetch '{key}': Bundle.entry is not a list", details={"field": f"prefetch.{key}"})
        resources = [entry.get("resource") for entry in entries if isinstance(entry, dict)]
        if any(not isinstance(resource, dict) for resource in resources):
            raise BadRequest(f"prefetch '{key}': a Bundle entry has no resource",
                             details={"field": f"prefetch.{key}"})
    else:
        resources = [value]
    if len(resources) > MAX_RESOURCES_PER_KEY:
        raise BadRequest(f"prefetch '{key}' holds more than {MAX_RESOURCES_PER_KEY} resources",
                         details={"field": f"prefetch.{key}"})
    for resource in resources:
        if not isinstance(resource, dict) or not owned_by(resource, patient_id):
            # Never echo the other patient's id: name only the key.
            raise BadRequest(f"prefetch '{key}' holds a resource of another patient than context.patientId",
                             details={"field": f"prefetch.{key}", "reason": "other_patient"})
    return resources  # type: ignore[return-value]


def fill_template(template: str, context: Mapping[str, Any]) -> str:
    """The relative FHIR URL of a published template for this call's context (tokens URL-encoded)."""
    url = template
    for token, field in ((PATIENT_TOKEN, "patientId"), (USER_TOKEN, "userId")):
        if token in url:
            url = url.replace(token, quote(str(context.get(field, "")), safe="/"))
    return url


class FhirFetcher:
    """Fetches a missing prefetch key from the EHR's FHIR server with the token the EHR gave.

    A searchset Bundle that names a ``next`` page (``Bundle.link`` with relation ``next``) is
    followed, page after page, and the entries merged into one Bundle: only to URLs on the
    ``fhirServer``'s own origin (scheme, host and port), at most MAX_PAGES pages and
    MAX_RESOURCES_PER_KEY resources. An answer beyond those bounds is refused (412), never truncated.
    """

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client

    def fetch(self, fhir_server: str, access_token: str, relative_url: str, key: str) -> Any:
        """The resource or searchset Bundle (all its pages) at ``fhir_server/relative_url``;
        PreconditionFailed when it cannot be had (unreachable, refused, not FHIR JSON, a next page
        off the server's origin, too many pages). A 404 of an instance read is null."""
        if not fhir_server.startswith(("https://", "http://")):
            raise BadRequest("fhirServer is not an http(s) URL", details={"field": "fhirServer"})
        url = fhir_server.rstrip("/") + "/" + relative_url
        client = self._client or httpx.Client(timeout=FHIR_TIMEOUT_S, follow_redirects=False)
        try:
            first = self._get(client, url, access_token, key, read="?" not in relative_url)
            if not _is_bundle(first):
                return first
            entries = list(first.get("entry") or [])
            next_url = _next_link(first)
            pages = 1
            while next_url is not None:
                if not _same_origin(next_url, fhir_server):
                    raise PreconditionFailed(
                        f"prefetch '{key}': the FHIR server's next page is not on its own origin; not followed",
                        details={"field": f"prefetch.{key}", "reason": "fhir_paging_off_origin"})
                if pages >= MAX_PAGES or len(entries) > MAX_RESOURCES_PER_KEY:
                    raise PreconditionFailed(
                        f"prefetch '{key}': the FHIR server's answer spans more than {MAX_PAGES} pages or "
                        f"{MAX_RESOURCES_PER_KEY} resources", details={"field": f"prefetch.{key}",
                                                                        "reason": "fhir_paging_too_long"})
                page = self._get(client, next_url, access_token, key, read=False)
                if not _is_bundle(page):
                    raise PreconditionFailed(f"prefetch '{key}': a next page of the FHIR server is not a Bundle",
                                             details={"field": f"prefetch.{key}", "reason": "fhir_not_bundle"})
                entries.extend(page.get("entry") or [])
                next_url = _next_link(page)
                pages += 1
        finally:
            if self._client is None:
                client.close()
        if pages == 1:
            return first
        merged = {name: value for name, value in first.items() if name not in ("entry", "link")}
        return merged | {"entry": entries}

    @staticmethod
    def _get(client: httpx.Client, url: str, access_token: str, key: str, *, read: bool) -> Any:
        try:
            response = client.get(url, headers={"Authorization": f"Bearer {access_token}",
                                                "Accept": "application/fhir+json"})
        except httpx.HTTPError:
            raise PreconditionFailed(f"prefetch '{key}' was not sent and the FHIR server could not be reached",
                                     details={"field": f"prefetch.{key}", "reason": "fhir_unreachable"}) from None
        if response.status_code == 404 and read:
            return None
        if response.status_code != 200:
            raise PreconditionFailed(
                f"prefetch '{key}' was not sent and the FHIR server answered {response.status_code}",
                details={"field": f"prefetch.{key}", "reason": "fhir_refused", "status": response.status_code})
        try:
            return response.json()
        except ValueError:
            raise PreconditionFailed(f"prefetch '{key}': the FHIR server did not answer JSON",
                                     details={"field": f"prefetch.{key}", "reason": "fhir_not_json"}) from None


def _is_bundle(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "Bundle"


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _same_origin(url: str, fhir_server: str) -> bool:
    try:
        return _origin(url) == _origin(fhir_server) and urlsplit(url).username is None
    except ValueError:  # a port that is not a number
        return False


def matches(template: str, resource: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """Whether ``resource`` answers a published template (read or search with patient, code, date):
    what a FHIR server does with it, for the demo EHR and the tests' FHIR double."""
    path, _, query = fill_template(template, context).partition("?")
    if "/" in path:
        resource_type, _, resource_id = path.partition("/")
        return resource.get("resourceType") == resource_type and resource.get("id") == resource_id
    if resource.get("resourceType") != path:
        return False
    for name, value in parse_qsl(query):
        if name == "patient" and not owned_by(resource, value):
            return False
        if name == "code" and not _has_code(resource, value.split(",")):
            return False
        if name == "date" and value.startswith("ge") and not _on_or_after(resource, value[2:]):
            return False
    return True


def _has_code(resource: Mapping[str, Any], wanted: list[str]) -> bool:
    codings = [c for c in (resource.get("code") or {}).get("coding", []) if isinstance(c, dict)]
    for component in resource.get("component") or []:
        codings.extend(c for c in (component.get("code") or {}).get("coding", []) if isinstance(c, dict))
    have = {f"{c.get('system')}|{c.get('code')}" for c in codings} | {str(c.get("code")) for c in codings}
    return any(code in have for code in wanted)


def _on_or_after(resource: Mapping[str, Any], day: str) -> bool:
    moment = resource.get("effectiveDateTime") or resource.get("issued")
    period = resource.get("period") or resource.get("effectivePeriod")
    if isinstance(period, dict):
        if period.get("end") is None:
            return True  # still in progress: it overlaps every later day
        moment = period["end"]
    return not isinstance(moment, str) or moment[:10] >= day
