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

#: The actions a rule may name; anything else must be a data type defined under [datatypes].
ACTIONS = frozenset({"keep", "date", "birth-date", "zip3", "hash-id", "reference", "coded-text", "age"})

#: An element spec maps an element name to an action, a data type name, or a nested spec.
ElementSpec = dict[str, Any]


@dataclass(frozen=True)
class ScrubRules:
    """Validated scrub rules."""

    resources: dict[str, ElementSpec]
    datatypes: dict[str, ElementSpec]
    terminology_systems: frozenset[str]
    terminology_system_prefixes: tuple[str, ...]
    restricted_zip3: frozenset[str]
    age_group_years: int
    patient_reference_elements: tuple[str, ...]
    allowed_modifier_extensions: frozenset[str]
    source: str
    #: Kept extensions by url; each spec may hold ``extension``: kept sub-extensions by url.
    extensions: dict[str, ElementSpec] = field(default_factory=dict)
    kept_tag_systems: frozenset[str] = frozenset()

    def is_terminology(self, system: object) -> bool:
        """True when ``system`` is a code system whose display strings are terminology, not patient text."""
        if not isinstance(system, str):
            return False
        return system in self.terminology_systems or system.startswith(self.terminology_system_prefixes)


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
    for owner, spec in [*(("datatypes." + k, v) for k, v in datatypes.items()),
                        *(("resources." + k, v) for k, v in resources.items())]:
        _check_spec(spec, owner, datatypes, path.name)
    extensions = raw.get("extensions", {})
    if not isinstance(extensions, dict):
        raise InvalidInput(f"de-identification rules {path.name}: [extensions] must be a table of urls")
    for url, spec in extensions.items():
        _check_spec(spec, f"extensions.{url}", datatypes, path.name)
    zips = [str(z) for z in raw.get("restricted_zip3", [])]
    if any(len(z) != 3 or not z.isdigit() for z in zips):
        raise InvalidInput(f"de-identification rules {path.name}: restricted_zip3 must hold 3-digit prefixes")
    return ScrubRules(
        resources=resources,
        datatypes=datatypes,
        terminology_systems=frozenset(raw.get("terminology_systems", [])),
        terminology_system_prefixes=tuple(raw.get("terminology_system_prefixes", [])),
        restricted_zip3=frozenset(zips),
        age_group_years=int(raw.get("age_group_years", 90)),
        patient_reference_elements=tuple(raw.get("patient_reference_elements", ["subject", "patient"])),
        allowed_modifier_extensions=frozenset(raw.get("allowed_modifier_extensions", [])),
        source=path.name,
        extensions=extensions,
        kept_tag_systems=frozenset(raw.get("kept_tag_systems", [])),
    )


def _check_spec(spec: object, owner: str, datatypes: dict[str, Any], file_name: str) -> None:
    if not isinstance(spec, dict):
        raise InvalidInput(f"de-identification rules {file_name}: {owner} must be a table")
    for name, rule in spec.items():
        where = f"{owner}.{name}"
        if isinstance(rule, dict):
            _check_spec(rule, where, datatypes, file_name)
        elif not isinstance(rule, str):
            raise InvalidInput(f"de-identification rules {file_name}: {where} must be an action or a type")
        elif rule[:1].isupper():
            if rule not in datatypes:
                raise InvalidInput(f"de-identification rules {file_name}: {where} names unknown type {rule}")
        elif rule not in ACTIONS:
            raise InvalidInput(f"de-identification rules {file_name}: {where} names unknown action {rule}")
