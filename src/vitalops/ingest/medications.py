"""Medications a MedicationRequest or MedicationAdministration names by reference.

An order may give its drug as ``medicationReference`` instead of ``medicationCodeableConcept``:
either ``#id``, a Medication in its own ``contained``, or ``Medication/<id>`` (absolute, versioned
or a Bundle's ``urn:uuid:``), a Medication resource elsewhere in the same export. The second kind
is resolved over the whole batch: every Medication read is indexed by its id here, and an order
whose Medication has not been read yet is held (as its JSON text, with its file and line) until
the batch has read everything, then normalized; one whose Medication never came is quarantined
then. So the outcome does not depend on whether ``Medication.ndjson`` comes before or after
``MedicationRequest.ndjson``. The index keeps each Medication's ``code`` element only, and that is
read as any CodeableConcept is: nothing but a coding's system and code can reach a fact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from vitalops.fhir.readers import SourceRecord

#: Resource types whose drug may be given by ``medicationReference``.
ORDER_TYPES = frozenset({"MedicationRequest", "MedicationAdministration"})
_TYPE_PREFIX = "Medication/"


def medication_reference(resource: dict[str, Any]) -> Any:
    """The ``reference`` text of the resource's ``medicationReference`` (None without one)."""
    reference = resource.get("medicationReference")
    return reference.get("reference") if isinstance(reference, dict) else None


def referenced_id(target: Any) -> str | None:
    """The Medication id a non-contained reference names (``Medication/<id>``, a full URL ending
    so, either with ``/_history/<version>``, or ``urn:uuid:<id>``); None when it names none."""
    if type(target) is not str or not target or target.startswith("#"):
        return None
    if target.startswith("urn:uuid:"):
        return target[9:] or None
    parts = target.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == "Medication" and parts[-1]:
        return parts[-1]
    return None


@dataclass
class MedicationIndex:
    """The Medications of one batch (id -> its ``code``) and the orders waiting for theirs.

    Holding is off until ``hold_unresolved`` (a caller that never calls ``release`` resolves only
    against what it has already indexed)."""

    codes: dict[str, Any] = field(default_factory=dict)
    holding: bool = False
    held: list[tuple[str, int, bytes]] = field(default_factory=list)

    def add(self, medication: dict[str, Any]) -> None:
        """Index a Medication resource by id. The first Medication of an id is kept: an order
        resolved before a later duplicate arrived must read the same code as one resolved after."""
        medication_id = medication.get("id")
        if type(medication_id) is str and medication_id and medication_id not in self.codes:
            code = medication.get("code")
            self.codes[medication_id] = code if isinstance(code, dict) else None

    def lookup(self, target: Any) -> tuple[bool, Any]:
        """(found, the Medication's ``code``) for a non-contained reference text."""
        medication_id = referenced_id(target)
        if medication_id is None or medication_id not in self.codes:
            return False, None
        return True, self.codes[medication_id]

    def hold_unresolved(self) -> None:
        """From now on, ``hold`` keeps orders whose Medication has not been read yet."""
        self.holding = True

    def hold(self, record: SourceRecord) -> bool:
        """Keep ``record`` for later when holding and it is an order that names, by a
        non-contained reference, a Medication not yet indexed; True when kept."""
        resource = record.resource
        if not self.holding or resource is None or resource.get("medicationCodeableConcept") is not None:
            return False
        target = medication_reference(resource)
        medication_id = referenced_id(target)
        if medication_id is None or medication_id in self.codes:
            return False
        self.held.append((record.file, record.line, orjson.dumps(resource)))
        return True

    def release(self) -> Iterator[SourceRecord]:
        """Stop holding and yield the held orders, in the order they were read (the index is
        complete by now: each resolves or is quarantined)."""
        self.holding = False
        held, self.held = self.held, []
        for file, line, text in held:
            yield SourceRecord(file, line, orjson.loads(text))
