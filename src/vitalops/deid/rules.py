"""The scrub rules: which FHIR elements survive de-identification, and what is done to each.

Rules are data (``rules.toml`` beside this module, or a hospital's own file) and block by
default: an element, data type or resource type that the rules do not list is dropped. Loading
checks every rule names a known action or a defined data type, so a typo cannot silently keep
or drop a field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitalops.errors import InvalidInput

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.toml")

#: The actions a rule may name; anything else must be a data type defined under [datatypes], or
#: ``value-set:<name>`` with ``<name>`` a table of codes under [value_sets]. Every action that
#: keeps a value keeps it only when it validates as what it claims to be (a number as a number, a
#: code in its code system's syntax, a UCUM unit that parses); see ``rules.toml``.
ACTIONS = frozenset({
    "keep", "boolean", "integer", "number", "code", "system", "unit", "resource-type",
    "date", "birth-date", "zip3", "hash-id", "reference", "age",
})
VALUE_SET_PREFIX = "value-set:"

#: An element spec maps an element name to an action, a data type name, or a nested spec.
ElementSpec = dict[str, Any]


@dataclass(frozen=True)
class ScrubRules:
    """Validated scrub rules."""

    resources: dict[str, ElementSpec]
    datatypes: dict[str, ElementSpec]
    terminology_systems: frozenset[str]
    restricted_zip3: frozenset[str]
    age_group_years: int
    patient_reference_elements: tuple[str, ...]
    allowed_modifier_extensions: frozenset[str]
    source: str
    #: Kept extensions by url; each spec may hold ``extension``: kept sub-extensions by url.
    extensions: dict[str, ElementSpec] = field(default_factory=dict)
    kept_tag_systems: frozenset[str] = frozenset()
    #: Codes of the required FHIR value sets that ``value-set:<name>`` rules check against.
    value_sets: dict[str, frozenset[str]] = field(default_factory=dict)


def load_rules(path: Path | None = None) -> ScrubRules:
    """Read and validate the rules at ``path`` (the shipped Safe Harbor rules by default).

    Raises InvalidInput naming the file and rule when the file cannot be read or a rule names
    neither a known action nor a defined data type.
    """
    path = path or DEFAULT_RULES_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read de-identification rules {path.name}: {type(exc).__name__}") from exc
    datatypes = raw.get("datatypes", {})
    resources = raw.get("resources", {})
    if not isinstance(datatypes, dict) or not isinstance(resources, dict) or not resources:
        raise InvalidInput(f"de-identification rules {path.name} must define [resources.<Type>] tables")
    value_sets = raw.get("value_sets", {})
    if not isinstance(value_sets, dict) or not all(
        isinstance(codes, list) and all(isinstance(code, str) for code in codes) for codes in value_sets.values()
    ):
        raise InvalidInput(f"de-identification rules {path.name}: [value_sets] must map names to lists of codes")
    for owner, spec in [*(("datatypes." + k, v) for k, v in datatypes.items()),
                        *(("resources." + k, v) for k, v in resources.items())]:
        _check_spec(spec, owner, datatypes, path.name, value_sets)
    extensions = raw.get("extensions", {})
    if not isinstance(extensions, dict):
        raise InvalidInput(f"de-identification rules {path.name}: [extensions] must be a table of urls")
    for url, spec in extensions.items():
        _check_spec(spec, f"extensions.{url}", datatypes, path.name, value_sets)
    zips = [str(z) for z in raw.get("restricted_zip3", [])]
    if any(len(z) != 3 or not z.isdigit() for z in zips):
        raise InvalidInput(f"de-identification rules {path.name}: restricted_zip3 must hold 3-digit prefixes")
    return ScrubRules(
        resources=resources,
        datatypes=datatypes,
        terminology_systems=frozenset(raw.get("terminology_systems", [])),
        restricted_zip3=frozenset(zips),
        age_group_years=int(raw.get("age_group_years", 90)),
        patient_reference_elements=tuple(raw.get("patient_reference_elements", ["subject", "patient"])),
        allowed_modifier_extensions=frozenset(raw.get("allowed_modifier_extensions", [])),
        source=path.name,
        extensions=extensions,
        kept_tag_systems=frozenset(raw.get("kept_tag_systems", [])),
        value_sets={name: frozenset(codes) for name, codes in value_sets.items()},
    )


def _check_spec(
    spec: object, owner: str, datatypes: dict[str, Any], file_name: str, value_sets: dict[str, Any]
) -> None:
    if not isinstance(spec, dict):
        raise InvalidInput(f"de-identification rules {file_name}: {owner} must be a table")
    for name, rule in spec.items():
        where = f"{owner}.{name}"
        if isinstance(rule, dict):
            _check_spec(rule, where, datatypes, file_name, value_sets)
        elif isinstance(rule, str) and rule.startswith(VALUE_SET_PREFIX):
            if rule.removeprefix(VALUE_SET_PREFIX) not in value_sets:
                raise InvalidInput(f"de-identification rules {file_name}: {where} names unknown value set {rule}")
        elif not isinstance(rule, str):
            raise InvalidInput(f"de-identification rules {file_name}: {where} must be an action or a type")
        elif rule[:1].isupper():
            if rule not in datatypes:
                raise InvalidInput(f"de-identification rules {file_name}: {where} names unknown type {rule}")
        elif rule not in ACTIONS:
            raise InvalidInput(f"de-identification rules {file_name}: {where} names unknown action {rule}")


def kept_elements(rules: ScrubRules) -> list[tuple[str, str, str]]:
    """Every element the rules keep: (resource type, data type or extension url; the element's
    dotted path; its action or data type), in the rules' order. The README's table is this list."""
    rows: list[tuple[str, str, str]] = []

    def walk(owner: str, spec: ElementSpec, prefix: str) -> None:
        for name, rule in spec.items():
            if isinstance(rule, dict):
                walk(owner, rule, f"{prefix}{name}.")
            else:
                rows.append((owner, f"{prefix}{name}", rule))

    for group in (rules.resources, rules.datatypes, rules.extensions):
        for owner, spec in group.items():
            walk(owner, spec, "")
    return rows


def kept_elements_table(rules: ScrubRules) -> str:
    """The Markdown table of ``kept_elements``, one row per owner (the README embeds it)."""
    by_owner: dict[str, list[str]] = {}
    for owner, element, rule in kept_elements(rules):
        by_owner.setdefault(owner, []).append(f"`{element}` ({rule})")
    lines = ["| resource, data type or extension | kept elements (action or type) |", "|---|---|"]
    lines += [f"| `{owner}` | {', '.join(elements)} |" for owner, elements in by_owner.items()]
    return "\n".join(lines)
