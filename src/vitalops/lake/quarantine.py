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
        """Write ``records`` in one commit; returns how many were written."""
        if not records:
            return 0
        columns: dict[str, list[object]] = {name: [] for name in QUARANTINE_SCHEMA.names}
        for record in records:
            columns["record_id"].append(
                sha256_hex(f"{batch_id}\x1f{record.source_file}\x1f{record.line}\x1f{record.rule}".encode())
            )
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

    def read(self, batch_id: str | None = None) -> pa.Table:
        """All quarantine records, or those of one batch; an empty table when there are none."""
        if not self.exists():
            return QUARANTINE_SCHEMA.empty_table()
        dataset = DeltaTable(self.uri).to_pyarrow_dataset()
        if batch_id is None:
            return dataset.to_table()
        return dataset.to_table(filter=pc.field("batch_id") == batch_id)
