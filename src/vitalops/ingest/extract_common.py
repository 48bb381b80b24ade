"""What every FHIR -> facts extractor shares: the context of one normalization run, the outcomes
(skip or quarantine) a resource can end in, time and reference parsing, and code selection.

Times are kept as ISO text with a zone until a whole chunk is cast to Arrow timestamps at once
(``vitalops.ingest.fact_rows``), which is far cheaper than a ``datetime`` per value. FHIR says a
``dateTime`` with a time SHALL carry a zone, so a time without one is quarantined
(``date.no_timezone``) rather than guessed; a date-only value (``YYYY``, ``YYYY-MM``,
``YYYY-MM-DD``) is read as the start of that year, month or day in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from vitalops.core.ids import sha256_hex
from vitalops.ingest.medications import MedicationIndex
from vitalops.ingest.pseudonym import Pseudonymizer

if TYPE_CHECKING:
    from vitalops.terminology import Concept, Terminology

#: The meta.tag system that names the site a resource came from.
SITE_TAG_SYSTEM = "https://vitalops.dev/fhir/site"
#: The quarantine rule of a resource whose site tag no registered site claims.
SITE_UNREGISTERED = "site.unregistered"
#: The quarantine rule of a bound element (a status, a gender) whose code is not in its value set.
CODE_NOT_IN_VALUE_SET = "code.not_in_value_set"

_STORABLE_CACHE_LIMIT = 100_000

#: One fact before its timestamps are parsed and its id computed; see ``fact_rows.ROW_FIELDS``.
Row = tuple[Any, ...]


class Skipped(Exception):  # noqa: N818 - an outcome, not an error
    """The resource is valid FHIR that yields no facts by design; ``reason`` is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retracted(Skipped):
    """The resource's current version says it never was (entered in error, cancelled, refuted, not
    done): it yields one ``retraction`` fact, which supersedes the facts of its earlier versions from
    its ``known_at`` on. Where an extractor does not handle it, it counts as skipped."""


class Rejected(Exception):  # noqa: N818 - an outcome, not an error
    """The resource breaks a rule and goes to quarantine; ``reason`` names fields, never values."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass
class Context:
    """Everything an extractor needs for one normalization run."""

    default_site: str
    pseudonyms: Pseudonymizer
    terminology: Terminology
    known_at_default: str  # ISO text with zone: ingest time, for resources without meta.lastUpdated
    #: Registered sites: each feed tag value -> its site code (``vitalops.sites``). None when the
    #: caller acts for one site it has checked itself (a CDS Hooks prefetch): every resource is then
    #: of ``default_site`` and site tags are not read.
    sites: Mapping[str, str] | None = None
    #: The Medications read so far, which ``medicationReference`` resolves to (across chunks).
    medications: MedicationIndex = field(default_factory=MedicationIndex)
    concepts: dict[tuple[str | None, str | None], Concept | None] = field(default_factory=dict)
    storable: dict[tuple[str | None, str | None], bool] = field(default_factory=dict)

    def concept_for(self, system: str | None, code: str | None) -> Concept | None:
        key = (system, code)
        try:
            return self.concepts[key]
        except KeyError:
            found = self.terminology.concept_for(system, code) if system and code else None
            self.concepts[key] = found
            return found

    def is_storable(self, system: str | None, code: str | None) -> bool:
        """``Terminology.is_storable``, once per distinct coding."""
        key = (system, code)
        found = self.storable.get(key)
        if found is None:
            if len(self.storable) >= _STORABLE_CACHE_LIMIT:  # endless distinct local codes: bounded
                self.storable.clear()
            found = self.storable[key] = self.terminology.is_storable(system, code)
        return found


def instant(value: Any, field_name: str) -> str:
    """ISO text with a zone for a FHIR date, dateTime or instant; raises Rejected when it has none."""
    if type(value) is not str:
        raise Rejected("date.invalid", f"{field_name} is not a date")
    size = len(value)
    if size > 10:
        if value[-1] == "Z" or value[-6] in "+-":
            return value
        raise Rejected("date.no_timezone", f"{field_name} has a time but no time zone")
    if size == 10:
        return value + "T00:00:00Z"
    if size == 7:
        return value + "-01T00:00:00Z"
    if size == 4:
        return value + "-01-01T00:00:00Z"
    raise Rejected("date.invalid", f"{field_name} is not a date")


def optional_instant(value: Any, field_name: str) -> str | None:
    return None if value is None else instant(value, field_name)


def site_of(resource: dict[str, Any], ctx: Context) -> str:
    """The registered site code the resource's site tag (``meta.tag``) maps to, else the default
    site. A feed's own spelling never becomes a site: a tag no registered site claims raises
    Rejected (``site.unregistered``), whose reason does not repeat the tag."""
    sites = ctx.sites
    if sites is None:
        return ctx.default_site
    meta = resource.get("meta")
    if meta:
        for tag in meta.get("tag") or ():
            if tag.get("system") == SITE_TAG_SYSTEM and tag.get("code"):
                return registered_site(tag["code"], sites)
    return ctx.default_site


def registered_site(tag_code: Any, sites: Mapping[str, str]) -> str:
    """The site code registered for a site tag's code; raises Rejected (``site.unregistered``)."""
    site = sites.get(tag_code) if type(tag_code) is str else None
    if site is None:
        raise Rejected(SITE_UNREGISTERED, "meta.tag (site): the site code is not a registered site")
    return site


def known_at(resource: dict[str, Any], ctx: Context) -> str:
    """When this version of the resource was made available: meta.lastUpdated, else the ingest
    time. (Which version is current when is decided over all versions: ``vitalops.lake.versions``.)"""
    meta = resource.get("meta")
    if meta:
        updated = meta.get("lastUpdated")
        if updated is not None:
            return instant(updated, "meta.lastUpdated")
    return ctx.known_at_default


def source_version(resource: dict[str, Any]) -> str:
    """meta.versionId, else meta.lastUpdated, else a hash of the content (so a changed resource
    without version metadata is still a new version)."""
    meta = resource.get("meta")
    if meta:
        version = meta.get("versionId") or meta.get("lastUpdated")
        if version:
            return str(version)
    return "sha256:" + sha256_hex(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS))[:32]


def resource_id(resource: dict[str, Any], resource_type: str) -> str:
    value = resource.get("id")
    if not value or type(value) is not str:
        raise Rejected("required.id", f"{resource_type} has no id")
    return value


def reference_id(reference: Any, expected_type: str) -> str | None:
    """The id in a reference to ``expected_type``; None when there is no reference.

    Raises Rejected for a contained (``#id``) reference and Skipped when it points to another type.
    """
    if not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    if not text or type(text) is not str:
        return None
    if text.startswith(expected_type) and text[len(expected_type) : len(expected_type) + 1] == "/":
        local = text[len(expected_type) + 1 :]
        if "/" not in local:
            return local
    if text.startswith("#"):
        raise Rejected("reference.unresolvable", f"contained {expected_type} reference cannot be resolved")
    if text.startswith("urn:uuid:"):
        return text[9:]
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        raise Rejected("reference.unresolvable", f"reference to a {expected_type} has no type")
    if parts[-2] != expected_type:
        raise Skipped(f"subject is not a {expected_type}")
    return parts[-1]


def patient_key(resource: dict[str, Any], ctx: Context) -> str:
    """The pseudonymous key of the subject (or patient) of a clinical resource."""
    subject = resource.get("subject") or resource.get("patient")
    patient_id = reference_id(subject, "Patient")
    if patient_id is None:
        raise Rejected("required.subject", f"{resource.get('resourceType')} has no subject reference")
    return ctx.pseudonyms.patient_key(patient_id)


def encounter_key(resource: dict[str, Any], ctx: Context) -> str | None:
    reference = resource.get("encounter") or resource.get("context")
    try:
        encounter_id = reference_id(reference, "Encounter")
    except (Skipped, Rejected):
        return None  # an encounter link is optional context: a bad one is dropped, not fatal
    return None if encounter_id is None else ctx.pseudonyms.encounter_key(encounter_id)


def pick_coding(concept_field: Any, ctx: Context) -> tuple[str | None, str | None, Concept | None]:
    """(system, code, concept) of the first coding that maps to a concept, else (system, code,
    None) of the first coding well formed in a known code system, else Nones: a local code no
    mapping names, or a code not in its system's syntax, never becomes a fact's code (it may be
    free text). Raises TypeError for a system or code that is not text (a malformed resource)."""
    if not isinstance(concept_field, dict):
        return None, None, None
    codings = concept_field.get("coding") or ()
    for coding in codings:
        system, code = coding.get("system"), coding.get("code")
        concept = ctx.concept_for(system, code)
        if concept is not None:
            return system, code, concept
    return (*known_code(concept_field, ctx), None)


def known_code(concept_field: Any, ctx: Context) -> tuple[str | None, str | None]:
    """(system, code) of the first coding of a CodeableConcept that may be stored
    (``Context.is_storable``), else (None, None); TypeError as for ``pick_coding``."""
    if isinstance(concept_field, dict):
        for coding in concept_field.get("coding") or ():
            system, code = coding.get("system"), coding.get("code")
            if (system is not None and type(system) is not str) or (code is not None and type(code) is not str):
                raise TypeError("coding")
            if ctx.is_storable(system, code):
                return system, code
    return None, None


def first_code(concept_field: Any) -> str | None:
    """The first code of a CodeableConcept, whatever its system: for a bound element whose code
    is then checked against its value set (``bound_code``), never stored unchecked."""
    if isinstance(concept_field, dict):
        for coding in concept_field.get("coding") or ():
            if coding.get("code"):
                return coding["code"]  # type: ignore[no-any-return]
    return None


def bound_code(value: Any, allowed: frozenset[str], element: str, value_set: str) -> str | None:
    """``value`` when it is a code of the required value set ``allowed`` (None stays None); raises
    Rejected (``code.not_in_value_set``) naming the element and the value set, not the value."""
    if value is None:
        return None
    if type(value) is not str or value not in allowed:
        raise Rejected(CODE_NOT_IN_VALUE_SET, f"{element}: the code is not in value set {value_set}")
    return value


def append_retraction(resource: dict[str, Any], resource_type: str, status: str, ctx: Context, index: int,
                      rows: list[Row]) -> str:
    """Append the one ``retraction`` fact of a retracted resource version; return its site.

    The fact has no concept (no feature, cohort or label ever reads it); its only effect is that,
    as the resource's newest version, it supersedes the earlier versions' facts from its
    ``known_at`` on. Raises Rejected when the resource names no patient.
    """
    site = site_of(resource, ctx)
    known = known_at(resource, ctx)
    rows.append((
        site, patient_key(resource, ctx), "retraction", None, None, None, None, None, None, status,
        encounter_key(resource, ctx), known, None, known, resource_type,
        ctx.pseudonyms.resource_key(resource_type, resource_id(resource, resource_type)),
        source_version(resource), 0, index, None, None, None,
    ))
    return site


def event_row(
    resource: dict[str, Any], ctx: Context, index: int, *, kind: str, resource_type: str, site: str, patient: str,
    source_id: str, coding: tuple[str | None, str | None, Concept | None], status: Any, start: str,
    end: str | None, basis: str | None = None,
) -> Row:
    """The one fact of a coded event (a condition, a medication order or administration, a procedure);
    ``basis`` is its ``effective_basis`` (None: ``start`` is the event's own time)."""
    system, code, concept = coding
    return (
        site, patient, kind, concept.name if concept else None, system, code, None, None, None, status,
        encounter_key(resource, ctx), start, end, known_at(resource, ctx), resource_type, source_id,
        source_version(resource), 0, index, None, None, basis,
    )
