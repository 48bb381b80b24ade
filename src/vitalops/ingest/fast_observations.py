"""The bulk fast path for Observation NDJSON: lines decoded by msgspec into typed structs that
keep only the elements normalization reads, and facts built with caches over the values that
repeat (codes, units, categories, site tags, patient and encounter references).

It changes nothing about what a fact is: concept lookup, unit conversion, pseudonyms and the row
layout are the same functions ``extract_observation`` uses, and a line is taken only when its
shape is one the fast path has proved it handles exactly as the per-resource path would (an
Observation with a plain ``Patient/<id>`` subject, an ``effectiveDateTime`` with a zone, numeric
``valueQuantity`` values in units that convert, optional components of the same kind, version
metadata). Every other line (a Bundle, another resource type, a bad line, anything odd) goes to
``ChunkNormalization.add_record``, so the outcome of a file is identical either way; a test runs
both paths over the synthetic hospital and the bad-input files and compares every fact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from vitalops.fhir.readers import records_of_line
from vitalops.ingest.extract_common import SITE_TAG_SYSTEM, Context, pick_coding
from vitalops.ingest.extract_observation import _CATEGORY_KINDS, _NUMERIC_KINDS, _SKIPPED_STATUSES
from vitalops.ingest.normalize import ChunkNormalization
from vitalops.terminology import UnitError, normalize_unit_text, to_canonical

_VALUE_KEY = b'"value'
_NO_COMPONENTS: tuple[Any, ...] = ()
_ABSENT = msgspec.Raw(b"")


class _Coding(msgspec.Struct, frozen=True, gc=False):
    system: str | None = None
    code: str | None = None


class _CodeableConcept(msgspec.Struct, frozen=True, gc=False):
    coding: tuple[_Coding, ...] | None = None


class _Reference(msgspec.Struct, frozen=True, gc=False):
    reference: str | None = None


class _Quantity(msgspec.Struct, frozen=True, gc=False):
    value: float | None = None
    unit: str | None = None
    code: str | None = None


class _Meta(msgspec.Struct, frozen=True, gc=False):
    versionId: str | None = None  # noqa: N815 - FHIR element names
    lastUpdated: str | None = None  # noqa: N815
    tag: tuple[_Coding, ...] = ()


class _Component(msgspec.Struct, frozen=True, gc=False):
    code: _CodeableConcept | None = None
    valueQuantity: _Quantity | None = None  # noqa: N815


class _Observation(msgspec.Struct, gc=False):
    resourceType: str | None = None  # noqa: N815
    id: str | None = None
    meta: _Meta | None = None
    status: str | None = None
    subject: _Reference | None = None
    encounter: _Reference | None = None
    context: msgspec.Raw = _ABSENT  # read by the per-resource path when encounter is absent
    effectiveDateTime: str | None = None  # noqa: N815
    issued: str | None = None
    category: tuple[_CodeableConcept, ...] = ()
    code: _CodeableConcept | None = None
    valueQuantity: _Quantity | None = None  # noqa: N815
    component: tuple[_Component, ...] = ()


_DECODER = msgspec.json.Decoder(_Observation)


def _zoned(text: Any) -> bool:
    """True for a dateTime with a time and a zone (``extract_common.instant`` returns it unchanged)."""
    return type(text) is str and len(text) > 10 and (text[-1] == "Z" or text[-6] in "+-")


def _local_id(reference: str | None, prefix: str) -> str | None:
    """The id of a plain ``<Type>/<id>`` reference, else None (the per-resource path decides)."""
    if reference is None or not reference.startswith(prefix):
        return None
    local = reference[len(prefix) :]
    return local if local and "/" not in local else None


class FastObservations:
    """Decodes Observation NDJSON lines into a ``ChunkNormalization``; caches live for one ingest run."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._codes: dict[Any, tuple[Any, Any, Any]] = {}
        self._kinds: dict[tuple[_CodeableConcept, ...], str] = {}
        self._sites: dict[tuple[_Coding, ...], str] = {}
        self._patients: dict[str, str | None] = {}
        self._encounters: dict[str, str | None] = {}
        self._plain_units: dict[str, str] = {}
        self.taken = 0  # lines normalized here rather than by the per-resource path

    def add_lines(self, chunk: ChunkNormalization, file: str, first_line: int, lines: list[bytes]) -> None:
        """Normalize NDJSON ``lines`` (the first is line ``first_line`` of ``file``) into ``chunk``."""
        decoded = _decode_all(lines)
        source_ids = self._source_ids(decoded)
        add_fast = self._add_fast
        for offset, (line, observation) in enumerate(zip(lines, decoded, strict=True)):
            line_no = first_line + offset
            if observation is None or not add_fast(chunk, file, line_no, line, observation, source_ids[offset]):
                for record in records_of_line(file, line_no, line):
                    chunk.add_record(record)

    def _source_ids(self, decoded: list[_Observation | None]) -> list[str]:
        """``Pseudonymizer.resource_key("Observation", id)`` of every decoded line, as one ``map``
        pipeline over C functions (the HMAC of each resource id is the largest fixed cost per line)."""
        ids = [
            observation.id if observation is not None and type(observation.id) is str else "" for observation in decoded
        ]
        return list(self.ctx.pseudonyms.resource_keys("Observation", ids))

    def _add_fast(
        self,
        chunk: ChunkNormalization,
        file: str,
        line_no: int,
        line: bytes,
        observation: _Observation,
        source_id: str,
    ) -> bool:
        """Append the facts of one Observation and return True, or return False (and add nothing)
        when its shape is not one this path handles exactly."""
        status = observation.status
        if observation.resourceType != "Observation" or not observation.id or not status or status in _SKIPPED_STATUSES:
            return False
        meta = observation.meta
        if meta is None:
            return False  # no version metadata: the version is a content hash (per-resource path)
        version = meta.versionId or meta.lastUpdated
        if not version:
            return False
        subject = observation.subject
        patient = self._patient(subject.reference) if subject is not None else None
        if patient is None:
            return False
        encounter_ref = observation.encounter
        if encounter_ref is None:
            if observation.context is not _ABSENT:
                return False
            encounter = None
        else:
            encounter = self._encounter(encounter_ref.reference)
            if encounter is None:
                return False
        effective = observation.effectiveDateTime
        if not _zoned(effective):
            return False
        known = observation.issued if observation.issued is not None else meta.lastUpdated
        if known is None:
            known = self.ctx.known_at_default
        elif not _zoned(known):
            return False
        components = observation.component
        quantity = observation.valueQuantity
        if quantity is None:
            # The per-resource path looks at every value[x] of the resource itself: take the line
            # only when its every '"value' key belongs to a component Quantity.
            if not components or line.count(_VALUE_KEY) != 2 * len(components):
                return False
        site = self._site(meta.tag)
        category = observation.category
        category_kind = self._kinds.get(category)
        if category_kind is None:
            category_kind = self._kinds[category] = _category_kind(category)
        rows = chunk.rows
        mark = len(rows)
        index = chunk.read
        head = (site, patient)
        tail = (status, encounter, effective, None, known, "Observation", source_id, version)
        kind = category_kind
        if quantity is not None and not self._add_value(rows, head, tail, index, 0, observation.code, quantity, kind):
            return False
        for ordinal, component in enumerate(components or _NO_COMPONENTS, start=1):
            if component.valueQuantity is None or not self._add_value(
                rows, head, tail, index, ordinal, component.code, component.valueQuantity, category_kind
            ):
                del rows[mark:]
                return False
        chunk.read += 1
        self.taken += 1
        chunk.provenance[index] = (file, line_no, "Observation", site)
        chunk.per_site[site] += 1
        return True

    def _add_value(
        self,
        rows: list[Any],
        head: tuple[Any, ...],
        tail: tuple[Any, ...],
        index: int,
        ordinal: int,
        code_field: _CodeableConcept | None,
        quantity: _Quantity,
        category_kind: str,
    ) -> bool:
        value = quantity.value
        if value is None:
            return False
        resolved = self._codes.get(code_field)
        if resolved is None:
            resolved = self._codes[code_field] = self._resolve(code_field)
        system, code, concept = resolved
        raw_unit = quantity.code or quantity.unit
        if concept is None:
            if raw_unit is None:
                unit = None
            else:
                unit = self._plain_units.get(raw_unit)
                if unit is None:
                    unit = self._plain_units[raw_unit] = normalize_unit_text(raw_unit)
            number = float(value)
            kind = category_kind
            name = None
        else:
            try:
                number = to_canonical(concept, value, raw_unit)
            except UnitError:
                return False
            unit = concept.canonical_unit
            kind = concept.kind if concept.kind in _NUMERIC_KINDS else category_kind
            name = concept.name
        rows.append((*head, kind, name, system, code, number, None, unit, *tail, ordinal, index))
        return True

    def _resolve(self, code_field: _CodeableConcept | None) -> tuple[Any, Any, Any]:
        if code_field is None:
            return None, None, None
        as_json = {"coding": [{"system": c.system, "code": c.code} for c in code_field.coding or ()]}
        return pick_coding(as_json, self.ctx)

    def _patient(self, reference: str | None) -> str | None:
        if reference is None:
            return None
        try:
            return self._patients[reference]
        except KeyError:
            local = _local_id(reference, "Patient/")
            key = None if local is None else self.ctx.pseudonyms.patient_key(local)
            self._patients[reference] = key
            return key

    def _encounter(self, reference: str | None) -> str | None:
        if reference is None:
            return None
        try:
            return self._encounters[reference]
        except KeyError:
            local = _local_id(reference, "Encounter/")
            key = None if local is None else self.ctx.pseudonyms.encounter_key(local)
            self._encounters[reference] = key
            return key

    def _site(self, tags: tuple[_Coding, ...]) -> str:
        site = self._sites.get(tags)
        if site is None:
            site = self.ctx.default_site
            for tag in tags:
                if tag.system == SITE_TAG_SYSTEM and tag.code:
                    site = str(tag.code)
                    break
            self._sites[tags] = site
        return site


def _category_kind(category: tuple[_CodeableConcept, ...]) -> str:
    for concept in category:
        for coding in concept.coding or ():
            kind = _CATEGORY_KINDS.get(coding.code)  # type: ignore[arg-type]
            if kind is not None:
                return kind
    return "observation"


def _decode_all(lines: list[bytes]) -> list[_Observation | None]:
    """Every line decoded, or None for a line msgspec rejects (the per-resource path reads it)."""
    decode: Callable[[bytes], _Observation] = _DECODER.decode
    try:
        return list(map(decode, lines))
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    decoded: list[_Observation | None] = []
    for line in lines:
        try:
            decoded.append(decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError):
            decoded.append(None)
    return decoded
