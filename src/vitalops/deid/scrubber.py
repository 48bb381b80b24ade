"""The scrubber: one FHIR resource in, its de-identified form (or nothing) out.

Walks the resource against the rules, keeping only listed elements and applying each one's
action; see ``rules.toml`` for the actions and ``README.md`` beside it for the Safe Harbor
decisions (date offsets, ages over 89, display strings, ZIP codes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from vitalops.deid.dates import age_in_years, earliest_birthday, shift_date, truncate_to_year
from vitalops.deid.pseudonyms import date_shift_days, parse_reference, pseudonym
from vitalops.deid.report import DATE_MODE_NOTES, SAFE_HARBOR_DATES, DeidReport
from vitalops.deid.rules import VALUE_SET_PREFIX, ElementSpec, ScrubRules
from vitalops.errors import InvalidInput
from vitalops.fhir.resource_types import R4_RESOURCE_TYPES
from vitalops.terminology.code_systems import CODE_LISTS, CODE_SYNTAX, well_formed
from vitalops.terminology.concepts import SYSTEM_ALIASES
from vitalops.terminology.units import storable_unit

#: ``--dates`` modes. Only ``year`` meets HIPAA Safe Harbor (45 CFR 164.514(b)(2)(i)(C): no
#: element of a date but the year). ``shift`` (the default: every date of a patient moved by one
#: offset, at day precision) and ``shift-time`` (the same, keeping the time of day and offset)
#: keep real intervals and dates' shapes: a limited data set or expert-determination method, not
#: Safe Harbor.
DATE_MODES = ("shift", "year", "shift-time")
assert set(DATE_MODES) == set(DATE_MODE_NOTES)
#: The meta.tag system of the site a resource came from (``vitalops.ingest``).
SITE_TAG_SYSTEM = "https://vitalops.dev/fhir/site"
_SITE_CODE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_UCUM = "http://unitsofmeasure.org"
#: UCUM age units and how many of each make a year.
_UCUM_PER_YEAR = {"a": 1.0, "mo": 12.0, "wk": 52.1775, "d": 365.25, "h": 8766.0, "min": 525960.0}


class _Dropped:
    """Marks a value that an action removed."""


class _UnknownModifier(Exception):
    """A kept element carries a modifier extension the rules do not allow."""


DROPPED: Any = _Dropped()


@dataclass
class _Visit:
    """What the actions need to know about the resource being scrubbed."""

    resource_type: str
    shift_days: int | None  # None: no patient known, dates are truncated to the year


class Scrubber:
    """De-identifies resources one at a time, counting every action into ``report``."""

    def __init__(
        self, rules: ScrubRules, *, key: bytes, dates: str = "shift", as_of: date, report: DeidReport,
        site_tags: frozenset[str] | None = None,
    ) -> None:
        """``site_tags``: the registered sites' tag values, the only site tag codes kept (without
        it, a site tag's code is kept when it has the shape of a site code)."""
        if dates not in DATE_MODES:
            raise InvalidInput(f"dates must be one of {', '.join(DATE_MODES)}")
        if not key:
            raise InvalidInput("the pseudonymization key is empty")
        self.rules = rules
        self.key = key
        self.dates = dates
        self.as_of = as_of
        self.report = report
        self.site_tags = site_tags
        self._systems = frozenset({*CODE_SYNTAX, *CODE_LISTS, *SYSTEM_ALIASES, *rules.terminology_systems,
                                   *rules.kept_tag_systems})
        self._actions: dict[str, Callable[[Any, dict[str, Any], _Visit], Any]] = {
            "keep": self._keep,
            "boolean": self._boolean,
            "integer": self._integer,
            "number": self._number,
            "code": self._code,
            "system": self._system,
            "unit": self._unit,
            "resource-type": self._resource_type,
            "date": self._date,
            "birth-date": self._birth_date,
            "zip3": self._zip3,
            "hash-id": self._hash_id,
            "reference": self._reference,
            "age": self._age,
        }

    def scrub(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The de-identified resource, or None when the whole resource must be left out (counted)."""
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str):
            self.report.skipped["not-a-resource"] += 1
            return None
        spec = self.rules.resources.get(resource_type)
        if spec is None:
            self.report.skipped["unlisted-resource-type"] += 1
            return None
        if "implicitRules" in resource:
            self.report.skipped["unknown-modifier-extension"] += 1
            return None
        visit = _Visit(resource_type, self._patient_shift(resource))
        try:
            scrubbed = self._walk(resource, spec, resource_type, visit, top=True)
        except _UnknownModifier:
            self.report.skipped["unknown-modifier-extension"] += 1
            return None
        return {"resourceType": resource_type, **scrubbed}

    # ------------------------------------------------------------------ walking
    def _walk(self, node: dict[str, Any], spec: ElementSpec, path: str, visit: _Visit, *, top: bool = False
              ) -> dict[str, Any]:
        if "modifierExtension" in node and not self._modifiers_allowed(node["modifierExtension"]):
            # A modifier changes the meaning of the element that holds it: keeping the element
            # without it would falsify the record. (A modifier inside a dropped element is moot.)
            raise _UnknownModifier
        kept: dict[str, Any] = {}
        counts = self.report.actions
        for name, value in node.items():
            if top and name == "resourceType":
                continue
            if name == "modifierExtension":
                kept[name] = value  # allowed by url above: dropping it would change the meaning
                counts[(visit.resource_type, f"{path}.{name}", "keep")] += 1
                continue
            element = f"{path}.{name}"
            if name == "extension" and isinstance(value, list):
                extensions = self._extensions(value, spec.get("extension") if not top else None, element, visit)
                if extensions:
                    kept[name] = extensions
                continue
            rule = spec.get(name)
            if rule is None:
                counts[(visit.resource_type, element, "drop")] += 1
                continue
            if name == "tag" and path.endswith(".meta") and isinstance(value, list):
                value = [tag for tag in value if isinstance(tag, dict)
                         and tag.get("system") in self.rules.kept_tag_systems]
                counts[(visit.resource_type, element, "drop")] += len(node[name]) - len(value)
            if isinstance(value, list):
                items = [self._apply(item, rule, element, node, visit) for item in value]
                result: Any = [item for item in items if item is not DROPPED] or DROPPED
            else:
                result = self._apply(value, rule, element, node, visit)
            if result is not DROPPED:
                kept[name] = result
        return kept

    def _extensions(
        self, items: list[Any], listed: Any, element: str, visit: _Visit
    ) -> list[dict[str, Any]]:
        """The extensions kept by url: the rules' top-level [extensions] table, or for
        sub-extensions the ``extension`` table of their parent's spec. Everything else is dropped."""
        allowed = self.rules.extensions if listed is None else (listed if isinstance(listed, dict) else {})
        kept: list[dict[str, Any]] = []
        for item in items:
            url = item.get("url") if isinstance(item, dict) else None
            spec = allowed.get(url) if isinstance(url, str) else None
            if not isinstance(spec, dict):
                self.report.count(visit.resource_type, element, "drop")
                continue
            scrubbed = self._walk(item, spec, element, visit)
            if len(scrubbed) > 1:  # more than its url
                kept.append(scrubbed)
                self.report.count(visit.resource_type, element, "keep")
        return kept

    def _apply(self, value: Any, rule: Any, element: str, siblings: dict[str, Any], visit: _Visit) -> Any:
        if isinstance(rule, dict) or rule[:1].isupper():
            spec = rule if isinstance(rule, dict) else self.rules.datatypes[rule]
            if not isinstance(value, dict):
                self.report.count(visit.resource_type, element, "drop-malformed")
                return DROPPED
            walked = self._walk(value, spec, element, visit)
            if rule == "Coding" and "code" not in walked:
                return DROPPED  # a system without its code, or a flag, says nothing
            return walked or DROPPED
        if isinstance(value, dict | list):
            self.report.count(visit.resource_type, element, "drop-malformed")
            return DROPPED
        if rule.startswith(VALUE_SET_PREFIX):
            codes = self.rules.value_sets[rule.removeprefix(VALUE_SET_PREFIX)]
            result = value if isinstance(value, str) and value in codes else DROPPED
            action = "value-set"
        else:
            result = self._actions[rule](value, siblings, visit)
            action = rule
        self.report.count(visit.resource_type, element, action if result is not DROPPED else f"{action}:dropped")
        return result

    def _modifiers_allowed(self, extensions: Any) -> bool:
        allowed = self.rules.allowed_modifier_extensions
        if not isinstance(extensions, list):
            return False
        return all(isinstance(extension, dict) and extension.get("url") in allowed for extension in extensions)

    def _patient_shift(self, resource: dict[str, Any]) -> int | None:
        """The date offset of the patient this resource belongs to, or None when there is none."""
        if self.dates == SAFE_HARBOR_DATES:
            return None
        if resource.get("resourceType") == "Patient":
            patient_id = resource.get("id")
            if isinstance(patient_id, str) and patient_id:
                return date_shift_days(self.key, patient_id)
            return None
        for name in self.rules.patient_reference_elements:
            value = resource.get(name)
            reference = value[0] if isinstance(value, list) and value else value
            if isinstance(reference, dict):
                target = parse_reference(reference.get("reference"), reference.get("type"))
                if target and target[0] == "Patient":
                    return date_shift_days(self.key, target[1])
        return None

    # ------------------------------------------------------------------ actions
    def _keep(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        return value

    def _boolean(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        return value if isinstance(value, bool) else DROPPED

    def _integer(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        return value if type(value) is int else DROPPED

    def _number(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        return value if type(value) in (int, float) and value == value and abs(value) != float("inf") else DROPPED

    def _code(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        system = siblings.get("system")
        if system == SITE_TAG_SYSTEM and system in self.rules.kept_tag_systems and isinstance(value, str):
            known = value in self.site_tags if self.site_tags is not None else bool(_SITE_CODE.fullmatch(value))
            return value if known else DROPPED
        return value if well_formed(system, value) else DROPPED

    def _system(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        return value if isinstance(value, str) and value in self._systems else DROPPED

    def _unit(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        if siblings.get("system") not in (None, _UCUM):
            return DROPPED  # a code of another unit system: not checked here, so not kept
        unit = storable_unit(value)
        return DROPPED if unit is None else unit

    def _resource_type(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        return value if isinstance(value, str) and value in R4_RESOURCE_TYPES else DROPPED

    def _date(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        if not isinstance(value, str):
            return DROPPED
        if visit.shift_days is None:
            moved = truncate_to_year(value)
        else:
            moved = shift_date(value, visit.shift_days)
            if moved is not None and self.dates == "shift":
                moved = moved[:10]  # day precision: the time of day is dropped
        return DROPPED if moved is None else moved

    def _birth_date(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        if not isinstance(value, str):
            return DROPPED
        born = earliest_birthday(value)
        if born is None:
            return DROPPED
        if age_in_years(born, self.as_of) >= self.rules.age_group_years:
            # Grouped: every patient aged 90 or more gets the same birth year, the one that makes them 90.
            return f"{self.as_of.year - self.rules.age_group_years:04d}"
        return self._date(value, siblings, visit)

    def _zip3(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        country = siblings.get("country")
        if country not in (None, "US", "USA", "United States"):
            return DROPPED
        digits = value.strip() if isinstance(value, str) else ""
        if len(digits) not in (5, 9, 10) or not digits[:5].isdigit():
            return DROPPED
        prefix = digits[:3]
        return "000" if prefix in self.rules.restricted_zip3 else prefix

    def _hash_id(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        if not isinstance(value, str) or not value:
            return DROPPED
        return pseudonym(self.key, visit.resource_type, value)

    def _reference(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        target = parse_reference(value, siblings.get("type"))
        if target is None:
            return DROPPED
        return f"{target[0]}/{pseudonym(self.key, target[0], target[1])}"

    def _age(self, value: Any, siblings: dict[str, Any], visit: _Visit) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return DROPPED
        per_year = _UCUM_PER_YEAR.get(siblings.get("code"))  # type: ignore[arg-type]
        if per_year is None:
            return DROPPED
        if value / per_year < self.rules.age_group_years:
            return value
        # Grouped at 90 years; an age in other units that large is dropped rather than re-unitized.
        return self.rules.age_group_years if per_year == 1 else DROPPED
