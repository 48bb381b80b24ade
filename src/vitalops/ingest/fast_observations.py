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
import numpy as np

from vitalops.fhir.readers import records_of_line
from vitalops.ingest.extract_common import SITE_TAG_SYSTEM, Context, pick_coding
from vitalops.ingest.extract_observation import CATEGORY_KINDS, NUMERIC_KINDS, SKIPPED_STATUSES
from vitalops.ingest.normalize import ChunkNormalization
from vitalops.terminology import UnitError, check_unit, normalize_unit_text, to_canonical

_VALUE_KEY = b'"value'
_NO_COMPONENTS: tuple[Any, ...] = ()
_ABSENT = msgspec.Raw(b"")
_MISS: Any = object()  # not in a cache yet, or a shape the per-resource path must read


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


_NO_META = _Meta()
_NO_REFERENCE = _Reference()


class _Observation(msgspec.Struct, gc=False):
    resourceType: str | None = None  # noqa: N815
    id: str | None = None
    meta: _Meta = _NO_META
    status: str | None = None
    subject: _Reference = _NO_REFERENCE
    encounter: _Reference = _NO_REFERENCE
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
        self._values: dict[tuple[Any, Any], tuple[Any, ...]] = {}
        self.taken = 0  # lines normalized here rather than by the per-resource path

    def add_lines(self, chunk: ChunkNormalization, file: str, first_line: int, lines: list[bytes]) -> None:
        """Normalize NDJSON ``lines`` (the first is line ``first_line`` of ``file``) into ``chunk``."""
        decoded = _decode_all(lines)
        source_ids = self._source_ids(decoded)
        # The loop below is the hot path of bulk ingest: it reads locals only and calls a method
        # only on a cache miss or for components.
        rows, provenance, per_site = chunk.rows, chunk.provenance, chunk.per_site
        append = rows.append
        patients, encounters, sites, kinds, values = (
            self._patients,
            self._encounters,
            self._sites,
            self._kinds,
            self._values,
        )
        known_default = self.ctx.known_at_default
        taken = 0
        line_no = first_line - 1
        for line, observation, source_id in zip(lines, decoded, source_ids, strict=True):
            line_no += 1
            if observation is None:
                self._per_resource(chunk, file, line_no, line)
                continue
            status = observation.status
            meta = observation.meta
            reference = observation.subject.reference
            patient = patients.get(reference, _MISS) if reference is not None else None
            if patient is _MISS:
                patient = self._patient(reference)
            encounter_ref = observation.encounter
            if encounter_ref is _NO_REFERENCE:
                encounter = None if observation.context is _ABSENT else _MISS
            else:
                # Anything but a plain Encounter/<id> reference is left to the per-resource path.
                reference = encounter_ref.reference
                encounter = encounters.get(reference, _MISS) if reference is not None else _MISS
                if encounter is _MISS and reference is not None:
                    encounter = self._encounter(reference)
                if encounter is None:
                    encounter = _MISS
            effective = observation.effectiveDateTime
            known = observation.issued
            if known is None:
                known = meta.lastUpdated
            version = meta.versionId or meta.lastUpdated
            if (
                observation.resourceType != "Observation"
                or not observation.id
                or not status
                or status in SKIPPED_STATUSES
                or not version
                or patient is None
                or encounter is _MISS
                or type(effective) is not str
                or len(effective) <= 10
                or not (effective[-1] == "Z" or effective[-6] in "+-")
                or (known is not None and not _zoned(known))
            ):
                self._per_resource(chunk, file, line_no, line)
                continue
            if known is None:
                known = known_default
            site = sites.get(meta.tag)
            if site is None:
                site = self._site(meta.tag)
            category = observation.category
            category_kind = kinds.get(category)
            if category_kind is None:
                category_kind = kinds[category] = _category_kind(category)
            index = chunk.read
            quantity = observation.valueQuantity
            if quantity is not None and not observation.component:
                value = quantity.value
                raw_unit = quantity.code or quantity.unit
                key = (observation.code, raw_unit)
                resolved = values.get(key)
                if resolved is None:
                    resolved = values[key] = self._resolve_value(observation.code, raw_unit)
                system, code, name, concept_kind, concept, unit = resolved
                if value is None or concept is _MISS:
                    self._per_resource(chunk, file, line_no, line)
                    continue
                number = float(value) if concept is None else to_canonical(concept, value, raw_unit)
                append(
                    (
                        site,
                        patient,
                        concept_kind or category_kind,
                        name,
                        system,
                        code,
                        number,
                        None,
                        unit,
                        status,
                        encounter,
                        effective,
                        None,
                        known,
                        "Observation",
                        source_id,
                        version,
                        0,
                        index,
                    )
                )
            elif not self._add_components(
                rows,
                observation,
                line,
                (site, patient),
                (status, encounter, effective, None, known),
                source_id,
                version,
                category_kind,
                index,
            ):
                self._per_resource(chunk, file, line_no, line)
                continue
            chunk.read += 1
            taken += 1
            provenance[index] = (file, line_no, "Observation", site)
            per_site[site] += 1
        self.taken += taken

    def _per_resource(self, chunk: ChunkNormalization, file: str, line_no: int, line: bytes) -> None:
        for record in records_of_line(file, line_no, line):
            chunk.add_record(record)

    def _source_ids(self, decoded: list[_Observation | None]) -> list[str]:
        """``Pseudonymizer.resource_key("Observation", id)`` of every decoded line, as one ``map``
        pipeline over C functions (the HMAC of each resource id is the largest fixed cost per line)."""
        ids = [
            observation.id if observation is not None and type(observation.id) is str else "" for observation in decoded
        ]
        return list(self.ctx.pseudonyms.resource_keys("Observation", ids))

    def _resolve_value(self, code_field: _CodeableConcept | None, raw_unit: str | None) -> tuple[Any, ...]:
        """(system, code, concept name, concept kind when numeric, concept, unit) of a value coded
        ``code_field`` in ``raw_unit``; concept is ``_MISS`` when the unit does not convert."""
        system, code, concept = self._resolve(code_field)
        if concept is None:
            unit = None if raw_unit is None else normalize_unit_text(raw_unit)
            return system, code, None, None, None, unit
        try:
            check_unit(concept, raw_unit)
        except UnitError:
            return system, code, None, None, _MISS, None
        kind = concept.kind if concept.kind in NUMERIC_KINDS else None
        return system, code, concept.name, kind, concept, concept.canonical_unit

    def _add_components(
        self,
        rows: list[Any],
        observation: _Observation,
        line: bytes,
        head: tuple[Any, ...],
        middle: tuple[Any, ...],
        source_id: str,
        version: str,
        category_kind: str,
        index: int,
    ) -> bool:
        """Append the facts of an Observation with components (and perhaps its own value)."""
        components = observation.component
        quantity = observation.valueQuantity
        # The per-resource path looks at every value[x] of the resource itself: take a panel only
        # when its every '"value' key belongs to a component Quantity.
        if quantity is None and (not components or line.count(_VALUE_KEY) != 2 * len(components)):
            return False
        tail = (*middle, "Observation", source_id, version)
        mark = len(rows)
        if quantity is not None and not self._add_value(
            rows, head, tail, index, 0, observation.code, quantity, category_kind
        ):
            return False
        for ordinal, component in enumerate(components, start=1):
            if component.valueQuantity is None or not self._add_value(
                rows, head, tail, index, ordinal, component.code, component.valueQuantity, category_kind
            ):
                del rows[mark:]
                return False
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
            kind = concept.kind if concept.kind in NUMERIC_KINDS else category_kind
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
            kind = CATEGORY_KINDS.get(coding.code)  # type: ignore[arg-type]
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


def decodable_lines(lines: list[bytes]) -> np.ndarray:
    """Which lines decode into the types this path reads, without keeping what they decode to:
    strict JSON, every element read of the JSON type it must have. The columnar path takes a line
    only then (DuckDB reads ``NaN`` and trailing commas, and would turn ``5`` into ``"5"`` and
    ``"12"`` into 12.0)."""
    decode = _DECODER.decode
    try:
        for _ in map(decode, lines):
            pass
        return np.ones(len(lines), dtype=bool)
    except msgspec.DecodeError:  # ValidationError is one too
        pass
    flags = np.ones(len(lines), dtype=bool)
    for position, line in enumerate(lines):
        try:
            decode(line)
        except msgspec.DecodeError:
            flags[position] = False
    return flags
