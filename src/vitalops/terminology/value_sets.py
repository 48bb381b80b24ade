"""Value sets: which codes in LOINC, SNOMED CT, ICD-10-CM and RxNorm mean which concept.

The shipped value sets are data files under ``terminology/data/`` (``concepts.yaml`` and one CSV per
code system; provenance in ``data/SOURCES.md``). A hospital adds its own local codes with a CSV of
``system,code,concept[,unit]``. ICD-10-CM codes roll up to their category (``E11.9`` -> ``E11`` ->
``type2_diabetes``); RxNorm products roll up to their ingredient (``861007`` metformin 500 MG Oral
Tablet -> ``6809`` metformin).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vitalops.core.ids import content_hash
from vitalops.errors import InvalidInput, NotFound
from vitalops.lake.schema import FACT_KINDS
from vitalops.terminology.code_systems import well_formed
from vitalops.terminology.concepts import (
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    SYSTEM_ALIASES,
    Concept,
    ScaleConversion,
    UnitEquivalence,
)
from vitalops.terminology.units import UnitError, check_unit

#: Shortest ICD-10-CM code a prefix roll-up looks at: the three-character category.
_ICD_CATEGORY_LENGTH = 3
_LOCAL_COLUMNS = ("system", "code", "concept")
_LOCAL_OPTIONAL_COLUMNS = ("unit",)


class Terminology:
    """Maps codes to concepts. Built by ``load_terminology``; immutable once built."""

    def __init__(
        self,
        concepts: dict[str, Concept],
        exact_codes: dict[tuple[str, str], str],
        icd10cm_prefixes: dict[str, str],
        rxnorm_ingredients: dict[str, str],
        local_units: dict[tuple[str, str], str],
        value_sets: dict[str, list[tuple[str, str]]],
        version: str,
    ) -> None:
        self._concepts = concepts
        self._exact = {key: concepts[name] for key, name in exact_codes.items()}
        self._icd10cm_prefixes = {prefix: concepts[name] for prefix, name in icd10cm_prefixes.items()}
        self._rxnorm_ingredients = rxnorm_ingredients
        self._local_units = local_units
        self._value_sets = value_sets
        self._version = version

    @property
    def version(self) -> str:
        """sha256 over the loaded value sets, concept definitions and local mappings."""
        return self._version

    def concept_for(self, system: str | None, code: str | None) -> Concept | None:
        """The concept a coding means, or None when it is not mapped.

        Exact codes first; then ICD-10-CM codes by their longest mapped prefix (``E11.9`` ->
        ``type2_diabetes``). RxNorm products are mapped through their ingredient at load time.
        """
        if system is None or code is None:
            return None
        hit = self._exact.get((system, code))
        if hit is not None:
            return hit
        system = SYSTEM_ALIASES.get(system.strip(), system.strip())
        code = code.strip()
        hit = self._exact.get((system, code))
        if hit is not None or system != ICD10CM:
            return hit
        compact = code.replace(".", "").upper()
        for length in range(len(compact), _ICD_CATEGORY_LENGTH - 1, -1):
            hit = self._icd10cm_prefixes.get(compact[:length])
            if hit is not None:
                return hit
        return None

    def is_storable(self, system: object, code: object) -> bool:
        """True when a coding may be stored as a fact's code: it maps to a concept (shipped or
        through the hospital's local-codes file), or it is well formed in a known code system
        (``code_systems.well_formed``). Anything else is free text as far as the facts go."""
        if type(system) is not str or type(code) is not str:
            return False
        return self.concept_for(system, code) is not None or well_formed(system, code)

    def concept(self, name: str) -> Concept:
        """The concept called ``name``; raises NotFound naming it."""
        try:
            return self._concepts[name]
        except KeyError:
            raise NotFound(f"concept {name!r} is not defined in the terminology") from None

    def concepts(self) -> list[Concept]:
        """Every concept, sorted by name."""
        return [self._concepts[name] for name in sorted(self._concepts)]

    def codes_for(self, name: str) -> list[tuple[str, str]]:
        """The (system, code) pairs of a concept's value set, shipped first, then local codes. ICD-10-CM
        entries are categories (``E11``) whose subcodes also belong. Raises NotFound for an unknown
        concept."""
        self.concept(name)
        return list(self._value_sets.get(name, []))

    def rxnorm_ingredient(self, code: str) -> str | None:
        """The RxNorm ingredient code a shipped product code rolls up to, or None."""
        return self._rxnorm_ingredients.get(code.strip())

    def local_unit(self, system: str, code: str) -> str | None:
        """The unit a hospital's local mapping declares for its code (used when a value arrives without
        one), or None."""
        return self._local_units.get((system, code))


def load_terminology(local_mappings: Path | None = None) -> Terminology:
    """The shipped value sets plus, optionally, a hospital's CSV of local codes.

    The CSV has columns ``system,code,concept`` and optionally ``unit``. Raises NotFound when the file
    does not exist, and InvalidInput naming the file, line and field when a row is incomplete, names an
    unknown concept, remaps a code to a different concept, or declares a unit the concept cannot take.
    """
    builder = _Builder()
    builder.load_shipped()
    if local_mappings is not None:
        builder.load_local(Path(local_mappings))
    return builder.build()


class _Builder:
    def __init__(self) -> None:
        self.concepts: dict[str, Concept] = {}
        self.exact: dict[tuple[str, str], str] = {}
        self.prefixes: dict[str, str] = {}
        self.ingredients: dict[str, str] = {}
        self.local_units: dict[tuple[str, str], str] = {}
        self.value_sets: dict[str, list[tuple[str, str]]] = {}
        self.local_rows: list[list[str]] = []

    # -- shipped ---------------------------------------------------------------------------------
    def load_shipped(self) -> None:
        data = resources.files("vitalops.terminology") / "data"
        definitions = yaml.safe_load((data / "concepts.yaml").read_text(encoding="utf-8"))
        for kind, entries in definitions.items():
            if kind not in FACT_KINDS:
                raise InvalidInput(f"concepts.yaml: kind {kind!r} is not a fact kind")
            for name, spec in entries.items():
                self.concepts[name] = _concept_from_yaml(kind, name, spec)
        for system, file_name in ((LOINC, "loinc.csv"), (SNOMED, "snomed.csv")):
            for _, row in _rows(file_name, (data / file_name).read_text(encoding="utf-8")):
                self._add_code(system, row["code"], row["concept"], file_name)
        for _, row in _rows("icd10cm.csv", (data / "icd10cm.csv").read_text(encoding="utf-8")):
            self._known(row["concept"], "icd10cm.csv")
            if row["match"] == "prefix":
                self.prefixes[row["code"].replace(".", "").upper()] = row["concept"]
                self.value_sets.setdefault(row["concept"], []).append((ICD10CM, row["code"]))
            else:
                self._add_code(ICD10CM, row["code"], row["concept"], "icd10cm.csv")
        rxnorm_rows = list(_rows("rxnorm.csv", (data / "rxnorm.csv").read_text(encoding="utf-8")))
        ingredient_concepts = {row["code"]: row["concept"] for _, row in rxnorm_rows if row["tty"] == "IN"}
        for line, row in rxnorm_rows:
            if row["tty"] == "IN":
                self._add_code(RXNORM, row["code"], row["concept"], "rxnorm.csv")
                continue
            concept = ingredient_concepts.get(row["ingredient"])
            if concept is None:
                raise InvalidInput(f"rxnorm.csv line {line}: ingredient is not a listed ingredient code")
            self.ingredients[row["code"]] = row["ingredient"]
            self._add_code(RXNORM, row["code"], concept, "rxnorm.csv")

    # -- local -----------------------------------------------------------------------------------
    def load_local(self, path: Path) -> None:
        if not path.is_file():
            raise NotFound(f"local mappings file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(f"{path}: local mappings file is not UTF-8 text") from None
        reader = csv.reader(text.splitlines())
        header = [column.strip().lower() for column in next(reader, [])]
        for column in _LOCAL_COLUMNS:
            if column not in header:
                raise InvalidInput(
                    f"{path} line 1: missing column {column!r}", details={"line": 1, "field": column}
                )
        for column in header:
            if column not in _LOCAL_COLUMNS + _LOCAL_OPTIONAL_COLUMNS:
                raise InvalidInput(
                    f"{path} line 1: unknown column {column!r}", details={"line": 1, "field": column}
                )
        for line, values in enumerate(reader, start=2):
            if not any(value.strip() for value in values):
                continue
            if len(values) != len(header):
                raise InvalidInput(
                    f"{path} line {line}: expected {len(header)} fields, found {len(values)}",
                    details={"line": line},
                )
            row = {column: value.strip() for column, value in zip(header, values, strict=True)}
            self._add_local(path, line, row)

    def _add_local(self, path: Path, line: int, row: dict[str, str]) -> None:
        def fail(field: str, problem: str) -> InvalidInput:
            return InvalidInput(
                f"{path} line {line}: field {field!r} {problem}", details={"line": line, "field": field}
            )

        for column in _LOCAL_COLUMNS:
            if not row[column]:
                raise fail(column, "is empty")
        system = SYSTEM_ALIASES.get(row["system"], row["system"])
        code, name = row["code"], row["concept"]
        concept = self.concepts.get(name)
        if concept is None:
            raise fail("concept", f"names unknown concept {name!r}")
        existing = self.exact.get((system, code))
        if existing is not None and existing != name:
            raise fail("code", f"is already mapped to concept {existing!r}")
        unit = row.get("unit") or ""
        if unit:
            try:
                check_unit(concept, unit)
            except UnitError as exc:
                raise fail("unit", f"cannot be used for concept {name!r} ({exc.rule})") from None
            self.local_units[(system, code)] = unit
        if existing is None:
            self._add_code(system, code, name, str(path))
        self.local_rows.append([system, code, name, unit])

    # -- common ----------------------------------------------------------------------------------
    def _known(self, name: str, source: str) -> None:
        if name not in self.concepts:
            raise InvalidInput(f"{source}: concept {name!r} is not defined in concepts.yaml")

    def _add_code(self, system: str, code: str, name: str, source: str) -> None:
        self._known(name, source)
        self.exact[(system, code)] = name
        self.value_sets.setdefault(name, []).append((system, code))

    def build(self) -> Terminology:
        version = content_hash(
            {
                "concepts": [self.concepts[name].definition() for name in sorted(self.concepts)],
                "codes": sorted([system, code, name] for (system, code), name in self.exact.items()),
                "icd10cm_prefixes": sorted(self.prefixes.items()),
                "rxnorm_ingredients": sorted(self.ingredients.items()),
                "local": sorted(self.local_rows),
            }
        )
        return Terminology(
            self.concepts,
            self.exact,
            self.prefixes,
            self.ingredients,
            self.local_units,
            self.value_sets,
            version,
        )


def _rows(source: str, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(text.splitlines())
    for line, row in enumerate(reader, start=2):
        yield line, {key: (value or "").strip() for key, value in row.items()}


def _concept_from_yaml(kind: str, name: str, spec: dict[str, Any]) -> Concept:
    plausible = spec.get("plausible") or (None, None)
    return Concept(
        name=name,
        kind=kind,
        canonical_unit=spec.get("canonical_unit"),
        plausible_low=None if plausible[0] is None else float(plausible[0]),
        plausible_high=None if plausible[1] is None else float(plausible[1]),
        description=spec["description"],
        equivalences=tuple(
            UnitEquivalence(e["from"], e["to"], float(e["factor"]), e["source"])
            for e in spec.get("equivalences", [])
        ),
        scale_conversions=tuple(
            ScaleConversion(c["from"], float(c["scale"]), float(c["offset"]), c["source"])
            for c in spec.get("conversions", [])
        ),
    )
