"""The governed entry point for building a training set: permission, build, write, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitalops.audit import append
from vitalops.auth.guard import authorize
from vitalops.auth.permissions import Permission
from vitalops.auth.principal import Principal
from vitalops.db.engine import Database
from vitalops.features.definition_sets import register_definitions
from vitalops.features.definitions import load_spec
from vitalops.features.training_set import Progress, build_training_set, summarize, write_training_set


def build_dataset(
    database: Database,
    principal: Principal,
    spec_path: Path,
    out_uri: str,
    *,
    lake_root: str,
    engine: str = "local",
    scheduler: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the training set defined in ``spec_path`` and write it to ``out_uri``.

    Needs DATASETS_BUILD (PermissionDenied otherwise, audited). Writes the audit event
    ``dataset.built`` with the fingerprint only, and registers the definitions under their version
    (for serving the models trained on them). Returns the summary (see ``summarize``) with the
    Delta version written. Raises InvalidInput for a bad definition or an empty cohort.
    """
    spec = load_spec(spec_path)
    authorize(database, principal, Permission.DATASETS_BUILD, object_type="dataset", object_id=spec.name)
    training_set = build_training_set(spec, lake_root, engine=engine, scheduler=scheduler, progress=progress)
    delta_version = write_training_set(training_set, out_uri)
    with database.session() as session:
        register_definitions(session, training_set.spec)
        append(
            session,
            actor=principal,
            action="dataset.built",
            object_type="dataset",
            object_id=spec.name,
            payload={"fingerprint": training_set.fingerprint.to_dict(), "delta_version": delta_version,
                     "engine": engine},
        )
    return {**summarize(training_set), "delta_version": delta_version, "out": out_uri}
