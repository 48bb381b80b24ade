"""Bulk-export-style output: one NDJSON file per resource type, plus ground truth and identifiers.

Lines are written with orjson in the key order the builders chose, so the same seed gives the
same bytes. ``ground_truth.jsonl`` is not FHIR: one line per patient and per inpatient stay with
the true risks and outcomes. ``identifiers.json`` lists every planted direct identifier.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from vitalops.errors import InvalidInput
from vitalops.synth.people import Identity

RESOURCE_TYPES = (
    "Patient",
    "Encounter",
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationAdministration",
    "Procedure",
)
GROUND_TRUTH_FILE = "ground_truth.jsonl"
IDENTIFIERS_FILE = "identifiers.json"
_BUFFER = 1 << 20


class BulkWriter:
    """Streams resources into ``<Type>.ndjson`` files under ``out_dir`` and counts them per site and type."""

    def __init__(self, out_dir: Path, sites: Iterable[str]) -> None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create output folder {out_dir}: {exc.strerror}") from exc
        self.out_dir = out_dir
        self.counts: dict[str, dict[str, int]] = {site: dict.fromkeys(RESOURCE_TYPES, 0) for site in sites}
        self._files: dict[str, IO[bytes]] = {}
        self._identifiers: dict[str, set[str]] = {
            key: set()
            for key in (
                "names",
                "given_names",
                "family_names",
                "mrns",
                "ssns",
                "phones",
                "emails",
                "street_addresses",
                "cities",
                "zip_codes",
            )
        }
        try:
            for resource_type in RESOURCE_TYPES:
                self._files[resource_type] = (out_dir / f"{resource_type}.ndjson").open("wb", buffering=_BUFFER)
            self._files[GROUND_TRUTH_FILE] = (out_dir / GROUND_TRUTH_FILE).open("wb", buffering=_BUFFER)
        except OSError as exc:
            self.close()
            raise InvalidInput(f"cannot write into output folder {out_dir}: {exc.strerror}") from exc

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def write(self, site: str, resources: list[dict[str, Any]]) -> None:
        """Append resources (all of one type, or mixed) to their type's file."""
        counts = self.counts[site]
        for resource in resources:
            resource_type = resource["resourceType"]
            self._files[resource_type].write(orjson.dumps(resource) + b"\n")
            counts[resource_type] += 1

    def write_many(self, site: str, resource_type: str, resources: list[dict[str, Any]]) -> None:
        """Append resources that are all of ``resource_type`` in one write."""
        if resources:
            self._files[resource_type].write(b"\n".join(map(orjson.dumps, resources)) + b"\n")
            self.counts[site][resource_type] += len(resources)

    def ground_truth(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._files[GROUND_TRUTH_FILE].write(b"\n".join(map(orjson.dumps, records)) + b"\n")

    def plant(self, identity: Identity) -> None:
        """Remember a patient's direct identifiers for ``identifiers.json``."""
        found = self._identifiers
        found["names"].add(f"{identity.given} {identity.family}")
        found["given_names"].add(identity.given)
        found["family_names"].add(identity.family)
        found["mrns"].add(identity.mrn)
        found["ssns"].add(identity.ssn)
        found["phones"].add(identity.phone)
        found["emails"].add(identity.email)
        found["street_addresses"].add(identity.street)
        found["cities"].add(identity.city)
        found["zip_codes"].add(identity.zip_code)

    def planted_count(self) -> int:
        return sum(len(values) for values in self._identifiers.values())

    def write_identifiers(self) -> None:
        listing = {key: sorted(values) for key, values in self._identifiers.items()}
        (self.out_dir / IDENTIFIERS_FILE).write_bytes(orjson.dumps(listing, option=orjson.OPT_INDENT_2))

    def files(self) -> list[str]:
        return [f"{resource_type}.ndjson" for resource_type in RESOURCE_TYPES] + [
            GROUND_TRUTH_FILE,
            IDENTIFIERS_FILE,
        ]

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}
