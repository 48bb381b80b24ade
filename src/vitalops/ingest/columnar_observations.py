"""The fast path for Observation NDJSON: a block of lines read into columns (by the C scanner of
``native.scan_observations`` when it is built, else by msgspec into the typed structs below),
checked and normalized a column at a time with Arrow, with only the values that repeat (codes
with their units, site tags, categories) resolved in Python, once per distinct value.

It changes nothing about what a fact is: concept lookup, unit conversion (the affine map
``to_canonical`` applies, from ``canonical_affine``), pseudonyms and fact ids are the same
functions the per-resource path (``extract_observation``) uses. A line is taken only when its
shape is one this path handles exactly as the per-resource path would:

* it is strict JSON, as orjson reads it, with every element read of the JSON type the structs
  below declare (the scanner declines anything it is not sure of; msgspec rejects the rest);
* it is an Observation with an id, a status of the FHIR code list that is not a retraction, a
  site tag a registered site claims (or none), a plain ``Patient/<id>`` or ``urn:uuid:<id>``
  subject, a plain ``Encounter/<id>`` or ``urn:uuid:<id>`` encounter or none (and no
  ``context``), an
  ``effectiveDateTime`` with a time and a zone, and ``issued`` and ``meta.lastUpdated`` each with
  one or absent;
* every value it has is a finite ``valueQuantity`` number in a unit that converts to its
  concept's canonical unit, on the resource itself or on its components, and it has at least one;
  a panel without a value of its own, or with a component without a Quantity (one absent with a
  ``dataAbsentReason``, say), only when every ``"value`` key of the line belongs to a Quantity, and
  the code of every component decodes.

A line without ``meta.versionId`` or ``meta.lastUpdated`` (an export without ``meta``, as Synthea
writes them) is taken too: its version is the hash of its content that ``extract_common.source_version``
gives (computed by ``native.content_versions`` from the bytes when it can be sure of orjson's
spelling, else over orjson's parse), and it is known at the ingest time.

Every other line (a Bundle, another resource type, a bad line, anything odd) goes to the
per-resource path (``ChunkNormalization.add_record``), in its place in the chunk, so the outcome
of a file is identical either way; tests run both readers and the per-resource path over the
synthetic hospital, over files of odd and bad lines and over thousands of randomly broken lines,
and compare every fact, count and quarantine record.

The elements that repeat from line to line (``code``, ``category``, ``meta.tag``) are kept as raw
JSON text and decoded into their types once per distinct text: a line whose text does not decode
is not taken.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from vitalops.fhir.readers import records_of_line
from vitalops.ingest import native
from vitalops.ingest.extract_common import SITE_TAG_SYSTEM, Context, pick_coding, source_version
from vitalops.ingest.extract_observation import CATEGORY_KINDS, FACT_STATUSES, NUMERIC_KINDS
from vitalops.ingest.normalize import BlockProvenance, ChunkNormalization
from vitalops.terminology import UnitError, storable_unit
from vitalops.terminology.units import canonical_affine

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
    tag: msgspec.Raw = _ABSENT  # a list of codings (``_TAGS``)


class _Component(msgspec.Struct, frozen=True, gc=False):
    code: msgspec.Raw = _ABSENT  # a CodeableConcept or null (``_CODE``)
    valueQuantity: _Quantity | None = None  # noqa: N815


_NO_META = _Meta()
_NO_REFERENCE = _Reference()
_NO_QUANTITY = _Quantity()


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
    category: msgspec.Raw = _ABSENT  # a list of CodeableConcepts (``_CATEGORIES``)
    code: msgspec.Raw = _ABSENT  # a CodeableConcept or null (``_CODE``)
    valueQuantity: _Quantity = _NO_QUANTITY  # noqa: N815
    component: tuple[_Component, ...] = ()


_DECODER = msgspec.json.Decoder(_Observation)
_CODE = msgspec.json.Decoder(_CodeableConcept | None)
_CATEGORIES = msgspec.json.Decoder(tuple[_CodeableConcept, ...])
_TAGS = msgspec.json.Decoder(tuple[_Coding, ...])
_UNDECODED = _Observation()  # stands in for a line msgspec rejects (the per-resource path reads it)
#: What msgspec raises for a line it cannot decode (ValidationError is a DecodeError; a string that
#: is not UTF-8 raises UnicodeDecodeError).
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError)

_DECODE_BATCH = 2_000  # lines per call of the decoder
_VALUE_KEY = b'"value'
_CONTENT_VERSION = "sha256:"  # and 32 hex digits: ``extract_common.source_version`` without meta
_PATIENT, _ENCOUNTER = "Patient/", "Encounter/"
_URN_UUID = "urn:uuid:"
_FACT_STATUSES = pa.array(sorted(FACT_STATUSES), pa.string())
_PAIR_CACHE_LIMIT = 100_000
_NOT_TAKEN: Any = object()  # a repeated element whose text does not decode, or a unit that does not convert
#: The columns ``_Resolved`` entries give a fact.
_LOOKUP_TYPES = (
    ("code_system", pa.string()),
    ("code", pa.string()),
    ("concept", pa.string()),
    ("numeric_kind", pa.string()),
    ("unit", pa.string()),
    ("scale", pa.float64()),
    ("offset", pa.float64()),
    ("source_unit", pa.string()),
)
#: (system, code, concept name, numeric kind or None, unit, scale or None, offset or None, source
#: unit) of a value coded and united so.
_Resolved = tuple[Any, Any, Any, Any, Any, Any, Any, Any]
#: What ``_values`` reads of every component (``_Component``): the C scanner returns these
#: columns in this order too.
_COMPONENT_COLUMNS: list[native.Request] = [
    ("code", "raw", None),
    ("valueQuantity.value", "float", None),
    ("valueQuantity.code", "text", None),
    ("valueQuantity.unit", "text", None),
    ("valueQuantity", "is", None),
]
#: What ``_Block`` reads of every line (``_Observation``): the C scanner returns these columns in
#: this order too.
_BLOCK_COLUMNS: list[native.Request] = [
    ("id", "text", None),
    ("status", "text", None),
    ("subject.reference", "text", None),
    ("encounter.reference", "text", None),
    ("effectiveDateTime", "text", None),
    ("meta.versionId", "text", None),
    ("meta.lastUpdated", "text", None),
    ("issued", "text", None),
    ("resourceType", "text", None),
    ("valueQuantity.value", "float", None),
    ("valueQuantity.code", "text", None),
    ("valueQuantity.unit", "text", None),
    ("code", "raw", None),
    ("meta.tag", "raw", None),
    ("category", "raw", None),
    ("valueQuantity", "is", _NO_QUANTITY),
    ("encounter", "is", _NO_REFERENCE),
    ("context", "length", None),
    ("component", "length", None),
]


class ColumnarObservations:
    """Normalizes blocks of Observation NDJSON lines into a ``ChunkNormalization``; its caches live
    for one ingest run and are bounded."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pairs: dict[tuple[bytes, str | None], _Resolved] = {}
        self._sites: dict[bytes, str] = {}
        self._kinds: dict[bytes, str] = {}
        self._codes: dict[bytes, bool] = {}  # whether a component code's raw text decodes
        self.taken = 0  # lines normalized here rather than by the per-resource path

    def add_lines(self, chunk: ChunkNormalization, file: str, first_line: int, lines: Sequence[bytes]) -> None:
        """Normalize NDJSON ``lines`` (the first is line ``first_line`` of ``file``) into ``chunk``."""
        if not lines:
            return
        block, taken = _read_block(lines)
        taken &= block.shape_ok()
        site = self._by_text(block.tags, self._sites, self._site)
        kind = self._by_text(block.categories, self._kinds, _category_kind)
        taken &= site.valid & kind.valid
        values = self._values(block, lines, taken)
        taken[values.refused] = False
        block.version = _with_content_versions(block.version, lines, taken)
        indexes = _assign_indexes(chunk, file, first_line, lines, taken)
        if not taken.any():
            return
        positions = np.flatnonzero(taken)
        columns = self._fact_columns(block, positions, values, site.labels, kind.labels, indexes)
        sites = site.labels.take(pa.array(positions))
        chunk.add_columns(columns, BlockProvenance(file, indexes[taken], positions + first_line, sites))
        self.taken += len(positions)

    def _values(self, block: _Block, lines: Sequence[bytes], taken: np.ndarray) -> _Values:
        """Every value of the candidate lines (its line, ordinal, resolved code and unit), and the
        lines refused for a value that is missing, not finite, or in a unit that does not convert."""
        has_own, counts = block.has_own, block.components
        code, number, unit_code, unit_text, no_quantity = block.component_columns
        # Components of every line, in line order.
        parents = np.repeat(np.arange(len(counts)), counts)
        ordinals = np.arange(len(parents), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        with_quantity = np.bincount(parents[~no_quantity], minlength=len(counts))
        quantities = has_own + with_quantity
        # A line with no value at all: the per-resource path says why (data absent, no value...).
        refused = taken & (quantities == 0)
        # The per-resource path looks at every value[x] of the resource itself and of each
        # component without a Quantity: take such a line only when its every '"value' key belongs
        # to a Quantity (two each: "valueQuantity" and its "value").
        counted = np.flatnonzero(taken & (quantities > 0) & (~has_own | (with_quantity < counts)))
        keys = np.fromiter((lines[i].count(_VALUE_KEY) for i in counted.tolist()), np.int64, len(counted))
        refused[counted[keys != 2 * quantities[counted]]] = True
        # A component without a Quantity adds no fact, but the per-resource path reads its code.
        bare = np.flatnonzero(taken[parents] & no_quantity)
        if len(bare):
            refused[parents[bare[~self._codes_decode(code.take(pa.array(bare)))]]] = True
        own = np.flatnonzero(taken & has_own)  # the resource's own value, ordinal 0
        # The values of the components of the candidate lines.
        rows = np.flatnonzero(taken[parents] & ~no_quantity)
        parents, ordinals = parents[rows], ordinals[rows]
        picked = pa.array(rows)
        at_np = np.concatenate([own, parents])
        ordinal_np = np.concatenate([np.zeros(len(own), np.int64), ordinals])
        order = pa.array(np.lexsort((ordinal_np, at_np)))
        own_rows = pa.array(own)
        at = pa.array(at_np).take(order)
        code = pa.concat_arrays([block.codes.take(own_rows), code.take(picked)]).take(order)
        number = pa.concat_arrays([block.numbers.take(own_rows), number.take(picked)]).take(order)
        units = _raw_units(unit_code.take(picked), unit_text.take(picked))
        unit = pa.concat_arrays([block.own_units.take(own_rows), units]).take(order)
        lookup, unresolved = self._lookup(code, unit)
        bad = pc.or_(pc.invert(pc.fill_null(pc.is_finite(number), False)), unresolved)
        refused[np.asarray(at.filter(bad))] = True
        return _Values(at, pa.array(ordinal_np).take(order), number, lookup, refused)

    def _codes_decode(self, texts: pa.Array) -> np.ndarray:
        """Whether each raw ``code`` text decodes as a CodeableConcept (or is absent or null)."""
        encoded = texts.dictionary_encode()
        cache = self._codes
        if len(cache) >= _PAIR_CACHE_LIMIT:
            cache.clear()
        decodes = []
        for text in encoded.dictionary.to_pylist():
            known = cache.get(text)
            if known is None:
                try:
                    _CODE.decode(text) if text else None
                    known = True
                except _UNDECODABLE:
                    known = False
                cache[text] = known
            decodes.append(known)
        found: np.ndarray = np.array(decodes, bool)[np.asarray(encoded.indices)]
        return found

    def _lookup(self, codes: pa.Array, units: pa.Array) -> tuple[dict[str, pa.Array], pa.Array]:
        """The ``_LOOKUP_TYPES`` columns of each (code, unit) value, and which ones do not resolve."""
        code_keys, unit_keys = codes.dictionary_encode(), units.dictionary_encode()
        width = len(unit_keys.dictionary) + 1
        unit_index = np.asarray(unit_keys.indices.fill_null(width - 1), np.int64)
        combined = np.asarray(code_keys.indices, np.int64) * width + unit_index
        distinct, inverse = np.unique(combined, return_inverse=True)
        code_texts, unit_texts = code_keys.dictionary.to_pylist(), [*unit_keys.dictionary.to_pylist(), None]
        entries = [self._resolve(code_texts[key // width], unit_texts[key % width]) for key in distinct.tolist()]
        unresolved = pa.array(np.array([entry is _NOT_TAKEN for entry in entries], bool)[inverse])
        entries = [(None,) * len(_LOOKUP_TYPES) if entry is _NOT_TAKEN else entry for entry in entries]
        columns = list(zip(*entries, strict=True)) if entries else [()] * len(_LOOKUP_TYPES)
        take = pa.array(inverse)
        lookup = {
            name: pa.array(column, kind).take(take) for (name, kind), column in zip(_LOOKUP_TYPES, columns, strict=True)
        }
        return lookup, unresolved

    def _fact_columns(
        self,
        block: _Block,
        positions: np.ndarray,
        values: _Values,
        sites: pa.Array,
        kinds: pa.Array,
        indexes: np.ndarray,
    ) -> dict[str, pa.Array]:
        """One fact per value of the taken lines, in line order, then ordinal."""
        keep = pc.invert(pa.array(values.refused)).take(values.at)  # values of lines taken
        at = values.at.filter(keep)
        lookup = {name: column.filter(keep) for name, column in values.lookup.items()}
        raw = values.number.filter(keep)
        count = len(at)

        def per_value(column: pa.Array) -> pa.Array:
            return column.take(at)

        source_ids = self.ctx.pseudonyms.resource_key_column("Observation", block.ids.take(pa.array(positions)))
        line_to_taken = np.full(len(block.ids), -1, np.int64)
        line_to_taken[positions] = np.arange(len(positions))
        source_id = source_ids.take(pa.array(line_to_taken[np.asarray(at)]))
        converted = pc.add(pc.multiply(raw, lookup["scale"]), lookup["offset"])
        return {
            "site": per_value(sites),
            "patient_key": per_value(self._keys(block.patient_refs)),
            "kind": pc.coalesce(lookup["numeric_kind"], per_value(kinds)),
            "concept": lookup["concept"],
            "code_system": lookup["code_system"],
            "code": lookup["code"],
            "value_num": pc.if_else(pc.is_null(lookup["scale"]), raw, converted),
            "value_code": pa.nulls(count, pa.string()),
            "unit": lookup["unit"],
            "status": per_value(block.statuses),
            "encounter_key": per_value(self._keys(block.encounter_refs)),
            "effective_at": per_value(block.effective),
            "effective_end": pa.nulls(count, pa.string()),
            "known_at": per_value(pc.fill_null(block.known, self.ctx.known_at_default)),
            "source_type": pa.array(["Observation"] * count, pa.string()),
            "source_id": source_id,
            "source_version": per_value(block.version),
            "ordinal": values.ordinal.filter(keep),
            "resource_index": pa.array(indexes).take(at),
            "issued_at": per_value(block.issued),
            "source_unit": lookup["source_unit"],
            "effective_basis": pa.nulls(count, pa.string()),  # effective[x] is always an Observation's own time
        }

    def _keys(self, references: pa.Array) -> pa.Array:
        """The pseudonym of each ``<Type>/<id>`` reference (None stays None): the HMAC of each
        distinct reference, a column at a time."""
        encoded = references.dictionary_encode()
        return self.ctx.pseudonyms.reference_key_column(encoded.dictionary).take(encoded.indices)

    def _by_text(self, texts: pa.Array, cache: dict[bytes, Any], resolve: Callable[[bytes], Any]) -> _Labels:
        """A label for each raw JSON text (one ``resolve`` per distinct text), and which resolve."""
        encoded = texts.dictionary_encode()
        labels = []
        for text in encoded.dictionary.to_pylist():
            label = cache.get(text)
            if label is None:
                if len(cache) >= _PAIR_CACHE_LIMIT:
                    cache.clear()
                label = cache[text] = resolve(text)
            labels.append(label)
        valid = np.array([label is not _NOT_TAKEN for label in labels], bool)
        names = pa.array([None if label is _NOT_TAKEN else label for label in labels], pa.string())
        indices = np.asarray(encoded.indices)
        return _Labels(names.take(encoded.indices), valid[indices] if len(indices) else np.zeros(0, bool))

    def _site(self, text: bytes) -> Any:
        """The site code of a ``meta.tag`` text as ``extract_common.site_of`` gives it, or
        ``_NOT_TAKEN`` when that raises (a tag no registered site claims): the per-resource path
        quarantines such a line."""
        sites = self.ctx.sites
        if not text or sites is None:
            return self.ctx.default_site
        try:
            tags = _TAGS.decode(text)
        except _UNDECODABLE:
            return _NOT_TAKEN
        for tag in tags:
            if tag.system == SITE_TAG_SYSTEM and tag.code:
                return sites.get(tag.code, _NOT_TAKEN)
        return self.ctx.default_site

    def _resolve(self, code_text: bytes, raw_unit: str | None) -> Any:
        """The ``_Resolved`` entry of a value coded ``code_text`` (raw JSON) in ``raw_unit``, or
        ``_NOT_TAKEN`` when the code does not decode or the unit does not convert."""
        key = (code_text, raw_unit)
        entry = self._pairs.get(key)
        if entry is not None:
            return entry
        try:
            code_field = _CODE.decode(code_text) if code_text else None
        except _UNDECODABLE:
            entry = _NOT_TAKEN
        else:
            entry = self._resolve_decoded(code_field, raw_unit)
        if len(self._pairs) >= _PAIR_CACHE_LIMIT:  # a feed of endless distinct codes must not grow memory
            self._pairs.clear()
        self._pairs[key] = entry
        return entry

    def _resolve_decoded(self, code_field: _CodeableConcept | None, raw_unit: str | None) -> Any:
        if code_field is None:
            system, code, concept = None, None, None
        else:
            as_json = {"coding": [{"system": c.system, "code": c.code} for c in code_field.coding or ()]}
            system, code, concept = pick_coding(as_json, self.ctx)
        source_unit = storable_unit(raw_unit)  # as ``extract_observation._quantity`` keeps it
        if concept is None:
            return system, code, None, None, source_unit, None, None, source_unit
        try:
            scale, offset = canonical_affine(concept, raw_unit)
        except UnitError:
            return _NOT_TAKEN
        kind = concept.kind if concept.kind in NUMERIC_KINDS else None
        return system, code, concept.name, kind, concept.canonical_unit, scale, offset, source_unit


@dataclass(frozen=True)
class _Labels:
    """A label per line (site or category kind), and which lines' raw text resolved."""

    labels: pa.Array
    valid: np.ndarray


@dataclass(frozen=True)
class _Values:
    """The values of a block, one row each, in line order then ordinal: ``at`` is the line."""

    at: pa.Array
    ordinal: pa.Array
    number: pa.Array
    lookup: dict[str, pa.Array]
    refused: np.ndarray  # per line: a value refused it


class _Block:
    """The elements of every line of a block (``_BLOCK_COLUMNS``, in that order) and of every
    component of its lines, in line order (``_COMPONENT_COLUMNS``)."""

    def __init__(self, columns: list[Any], component_columns: list[Any]) -> None:
        (
            self.ids,
            self.statuses,
            patient_refs,
            encounter_refs,
            self.effective,
            version_ids,
            updated,
            issued,
            self.resource_types,
            self.numbers,
            quantity_codes,
            quantity_units,
            self.codes,
            self.tags,
            self.categories,
            no_quantity,
            self.no_encounter,
            contexts,
            self.components,
        ) = columns
        self.component_columns = component_columns
        # ``urn:uuid:<id>`` names the resource ``<id>`` (``extract_common.reference_id``).
        self.patient_refs = _urn_as_local(patient_refs, _PATIENT)
        self.encounter_refs = _urn_as_local(encounter_refs, _ENCOUNTER)
        self.has_own = ~no_quantity
        self.no_context = contexts == 0
        # ``versionId or lastUpdated``, ``lastUpdated`` and ``issued``, as the per-resource path reads them.
        self.version = pc.if_else(_non_empty(version_ids), version_ids, updated)
        self.known = updated
        self.issued = issued
        self.own_units = _raw_units(quantity_codes, quantity_units)  # ``code or unit``

    def shape_ok(self) -> np.ndarray:
        """The rules of the per-resource path that need no lookup (see the module docstring)."""
        encounter_ok = pc.if_else(
            pa.array(self.no_encounter), pa.array(self.no_context), _local_reference(self.encounter_refs, _ENCOUNTER)
        )
        checks = [
            pc.equal(self.resource_types, "Observation"),
            _non_empty(self.ids),
            pc.is_in(self.statuses, value_set=_FACT_STATUSES),
            _local_reference(self.patient_refs, _PATIENT),
            encounter_ok,
            _zoned(self.effective),
            pc.or_kleene(pc.is_null(self.known), _zoned(self.known)),
            pc.or_kleene(pc.is_null(self.issued), _zoned(self.issued)),
        ]
        ok = checks[0]
        for check in checks[1:]:
            ok = pc.and_kleene(ok, check)
        return np.asarray(pc.fill_null(ok, False))


def _read_block(lines: Sequence[bytes]) -> tuple[_Block, np.ndarray]:
    """The block of ``lines`` and which lines may be taken: read by the C scanner when it is built
    (``native.scan_observations``), else decoded by msgspec and gathered here (``_gather``). The two
    give the same columns; the scanner declines some odd lines msgspec decodes, which then go to
    the per-resource path."""
    scanned = native.scan_observations(lines, _BLOCK_COLUMNS, _COMPONENT_COLUMNS)
    if scanned is not None:
        taken, columns, component_columns = scanned
        return _Block(columns, component_columns), taken
    decoded, taken = _decode_all(lines)
    columns = _gather(decoded, _BLOCK_COLUMNS)
    with_components = np.flatnonzero(columns[-1]).tolist()
    components = [component for i in with_components for component in decoded[i].component]
    return _Block(columns, _gather(components, _COMPONENT_COLUMNS)), taken


def _gather(objects: list[Any], requests: Sequence[native.Request]) -> list[Any]:
    """The elements ``requests`` name of every object, one column per request (as
    ``native.scan_observations`` returns them)."""
    columns: list[Any] = []
    for path, kind, sentinel in requests:
        elements = _elements(objects, path)
        if kind == "text":
            columns.append(pa.array(elements, pa.string()))
        elif kind == "raw":
            columns.append(pa.array(list(map(bytes, elements)), pa.binary()))
        elif kind == "float":
            columns.append(pa.array(elements, pa.float64()))
        elif kind == "length":
            columns.append(np.fromiter(map(len, elements), np.int64, len(objects)))
        else:
            columns.append(np.fromiter((e is sentinel for e in elements), np.bool_, len(objects)))
    return columns


def _elements(objects: list[Any], path: str) -> list[Any]:
    """The element at dotted ``path`` of each object; None where an object on the way is None."""
    try:
        return list(map(operator.attrgetter(path), objects))
    except AttributeError:
        names = path.split(".")
        found = []
        for element in objects:
            for name in names:
                if element is None:
                    break
                element = getattr(element, name)
            found.append(element)
        return found


def _decode_all(lines: Sequence[bytes]) -> tuple[list[_Observation], np.ndarray]:
    """Every line decoded, and which lines decode (a line msgspec rejects stands as ``_UNDECODED``).

    msgspec passes over elements it does not read without checking their UTF-8, which orjson (and
    so the per-resource path) refuses: a line that is not UTF-8 throughout does not decode here
    either. Decoded a few thousand lines per call: one call holds the GIL throughout, and the
    thread that commits the previous chunk needs it now and then."""
    decode: Callable[[bytes], _Observation] = _DECODER.decode
    decoded: list[_Observation] = []
    ok = np.ones(len(lines), dtype=bool)
    for start in range(0, len(lines), _DECODE_BATCH):
        batch = lines[start : start + _DECODE_BATCH]
        try:
            b"".join(batch).decode()
            decoded += map(decode, batch)
            continue
        except _UNDECODABLE:
            del decoded[start:]
        for position, line in enumerate(batch, start=start):
            try:
                line.decode()
                decoded.append(decode(line))
            except _UNDECODABLE:
                decoded.append(_UNDECODED)
                ok[position] = False
    return decoded, ok


def _with_content_versions(versions: pa.Array, lines: Sequence[bytes], taken: np.ndarray) -> pa.Array:
    """``versions`` with the version of each taken line that has neither ``meta.versionId`` nor
    ``meta.lastUpdated`` filled in, as ``extract_common.source_version`` gives it (a hash of the
    resource's content); a line orjson does not read (none should be taken) is no longer taken."""
    missing = taken & ~np.asarray(_non_empty(versions))
    if not missing.any():
        return versions
    positions = np.flatnonzero(missing).tolist()
    hashed = native.content_versions([lines[position] for position in positions])
    found: list[str | None] = []
    for at, position in enumerate(positions):
        if hashed is not None and hashed[at] is not None:
            found.append(_CONTENT_VERSION + hashed[at])  # type: ignore[operator]
            continue
        try:
            found.append(source_version(orjson.loads(lines[position])))
        except orjson.JSONDecodeError:
            taken[position] = False
            found.append(None)
    return pc.replace_with_mask(versions, pa.array(missing), pa.array(found, pa.string()))


def _assign_indexes(
    chunk: ChunkNormalization, file: str, first_line: int, lines: Sequence[bytes], taken: np.ndarray
) -> np.ndarray:
    """The resource index of each taken line, in line order with the resources of the lines left
    to the per-resource path (which are normalized here, in order)."""
    indexes = np.zeros(len(lines), dtype=np.int64)
    start = 0
    for position in np.flatnonzero(~taken).tolist():
        run = position - start
        indexes[start:position] = np.arange(chunk.read, chunk.read + run)
        chunk.read += run
        for record in records_of_line(file, first_line + position, lines[position]):
            chunk.add_record(record)
        start = position + 1
    run = len(lines) - start
    indexes[start:] = np.arange(chunk.read, chunk.read + run)
    chunk.read += run
    return indexes


def _raw_units(codes: pa.Array, units: pa.Array) -> pa.Array:
    """``code or unit`` of each Quantity, as the per-resource path picks the unit."""
    return pc.if_else(_non_empty(codes), codes, units)


def _non_empty(texts: pa.Array) -> pa.Array:
    return pc.fill_null(pc.greater(pc.binary_length(texts), 0), False)


def _urn_as_local(references: pa.Array, prefix: str) -> pa.Array:
    """Each ``urn:uuid:<id>`` reference as ``<prefix><id>``, the rest as they are."""
    urn = pc.fill_null(pc.starts_with(references, _URN_UUID), False)
    if not pc.any(urn).as_py():
        return references
    local = pc.binary_join_element_wise(prefix, pc.utf8_slice_codeunits(references, start=len(_URN_UUID)), "")
    return pc.if_else(urn, local, references)


def _local_reference(references: pa.Array, prefix: str) -> pa.Array:
    """True for a plain ``<prefix><id>`` reference (an id with no ``/``), else False."""
    rest = pc.utf8_slice_codeunits(references, start=len(prefix))
    plain = pc.and_(pc.greater(pc.binary_length(rest), 0), pc.equal(pc.find_substring(rest, "/"), -1))
    return pc.fill_null(pc.and_(pc.starts_with(references, prefix), plain), False)


def _zoned(texts: pa.Array) -> pa.Array:
    """True for a dateTime with a time and a zone (``extract_common.instant`` returns it unchanged)."""
    sign = pc.utf8_slice_codeunits(texts, start=-6, stop=-5)
    zone = pc.or_(pc.ends_with(texts, "Z"), pc.is_in(sign, value_set=pa.array(["+", "-"])))
    return pc.fill_null(pc.and_(pc.greater(pc.utf8_length(texts), 10), zone), False)


def _category_kind(text: bytes) -> Any:
    if not text:
        return "observation"
    try:
        categories = _CATEGORIES.decode(text)
    except _UNDECODABLE:
        return _NOT_TAKEN
    for concept in categories:
        for coding in concept.coding or ():
            kind = CATEGORY_KINDS.get(coding.code)  # type: ignore[arg-type]
            if kind is not None:
                return kind
    return "observation"
