"""The quarantine: records that could not become facts, with the file, line and rule that rejected
them. A record names where the input was and why, never what a patient's value was."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from vitalops.core.ids import sha256_hex
from vitalops.lake.schema import QUARANTINE_SCHEMA
from vitalops.lake.tables import table_exists, table_uri


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """One rejected input: where it was (file, line), what it was, and the rule it broke."""

    source_file: str
    line: int | None
    resource_type: str | None
    source_id: str | None  # pseudonymous resource id, never the raw one
    rule: str
    reason: str
    site: str | None = None


def record_id(record: QuarantineRecord) -> str:
    """The id of the input a record stands for: its file, line, resource and the rule it broke."""
    parts = (record.source_file, record.line, record.resource_type, record.source_id, record.rule)
    return sha256_hex("\x1f".join("" if part is None else str(part) for part in parts).encode())


class QuarantineStore:
    """The ``quarantine`` Delta table under ``lake_root``."""

    def __init__(self, lake_root: str) -> None:
        self.uri = table_uri(lake_root, "quarantine")

    def exists(self) -> bool:
        return table_exists(self.uri)

    def append(
        self,
        records: Sequence[QuarantineRecord],
        *,
        batch_id: str,
        default_site: str,
        quarantined_at: datetime,
    ) -> int:
        """Write the records not quarantined before in one commit; returns how many were written.

        A record's id is the input it stands for (file, line, resource, rule), not the batch: the same
        input ingested again, or a killed batch rerun, adds nothing to the quarantine.
        """
        ids = [record_id(record) for record in records]
        known = self._known(ids)
        fresh = [(rid, record) for rid, record in dict(zip(ids, records, strict=True)).items() if rid not in known]
        if not fresh:
            return 0
        columns: dict[str, list[object]] = {name: [] for name in QUARANTINE_SCHEMA.names}
        for rid, record in fresh:
            columns["record_id"].append(rid)
            columns["batch_id"].append(batch_id)
            columns["site"].append(record.site or default_site)
            columns["source_file"].append(record.source_file)
            columns["line"].append(record.line)
            columns["resource_type"].append(record.resource_type)
            columns["source_id"].append(record.source_id)
            columns["rule"].append(record.rule)
            columns["reason"].append(record.reason)
            columns["quarantined_at"].append(quarantined_at)
        table = pa.Table.from_pydict(columns, schema=QUARANTINE_SCHEMA)
        write_deltalake(self.uri, table, mode="append", partition_by=["site"])
        return int(table.num_rows)

    def _known(self, ids: Sequence[str]) -> set[str]:
        if not ids or not self.exists():
            return set()
        dataset = DeltaTable(self.uri).to_pyarrow_dataset()
        found = dataset.to_table(columns=["record_id"], filter=pc.field("record_id").isin(list(set(ids))))
        return set(found.column("record_id").to_pylist())

    def read(self, batch_id: str | None = None) -> pa.Table:
        """All quarantine records, or those of one batch; an empty table when there are none."""
        if not self.exists():
            return QUARANTINE_SCHEMA.empty_table()
        dataset = DeltaTable(self.uri).to_pyarrow_dataset()
        if batch_id is None:
            return dataset.to_table()
        return dataset.to_table(filter=pc.field("batch_id") == batch_id)
