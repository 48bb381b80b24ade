"""Definition sets kept by version, so a model version is served with exactly the definitions it learned.

Building a training set through the features service registers its definitions (idempotent: a
version is a hash of the definitions and the terminology version). ``get_definitions`` reads them
back and checks that they still hash to the version asked for.
"""

from __future__ import annotations

import orjson
from sqlalchemy.orm import Session

from vitalops.core.clock import utcnow
from vitalops.db.tables.serving import DefinitionSetRow
from vitalops.errors import IntegrityError, NotFound
from vitalops.features.definitions import DatasetSpec, spec_from_dict


def register_definitions(session: Session, spec: DatasetSpec) -> str:
    """Keep ``spec`` under its version (a no-op when it is kept already); returns the version."""
    version = spec.version
    if session.get(DefinitionSetRow, version) is None:
        document = {"definitions": spec.model_dump(mode="json"), "terminology_version": spec._terminology_version,
                    "source": spec.source}
        session.add(DefinitionSetRow(version=version, name=spec.name, document_json=orjson.dumps(document).decode(),
                                     created_at=utcnow()))
        session.flush()
    return version


def get_definitions(session: Session, version: str) -> DatasetSpec:
    """The definition set of ``version``; NotFound when it was never registered, IntegrityError when the
    stored document no longer hashes to it."""
    row = session.get(DefinitionSetRow, version)
    if row is None:
        raise NotFound(f"definition set {version[:12]} is not registered here; rebuild the training set with "
                       "'vitalops dataset build' to register it")
    document = orjson.loads(row.document_json)
    spec = spec_from_dict(document["definitions"], source=document["source"])
    spec._terminology_version = document["terminology_version"]
    if spec.version != version:
        raise IntegrityError(f"definition set {version[:12]} does not hash to its version any more")
    return spec
