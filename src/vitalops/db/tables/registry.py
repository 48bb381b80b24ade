"""Tables of the model registry: models, their versions with lineage, and lifecycle transitions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    intended_use: Mapped[str] = mapped_column(Text)
    clinical_owner: Mapped[str] = mapped_column(String(128))
    risk_class: Mapped[str] = mapped_column(String(32))
    target_population: Mapped[str] = mapped_column(Text)
    output_meaning: Mapped[str] = mapped_column(Text)
    approvals_required: Mapped[int] = mapped_column(Integer)
    #: ``registry.schemas.ModelProfile`` as JSON: what the model card says beyond the identity.
    profile_json: Mapped[str] = mapped_column(Text, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(128))


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_model_versions_model_id_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # trained | registered
    submitter: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    dataset_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    dataset_fingerprint: Mapped[str] = mapped_column(String(64))
    definitions_version: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(128))
    estimator: Mapped[str] = mapped_column(String(64))
    flavor: Mapped[str] = mapped_column(String(16))
    hyperparameters_json: Mapped[str] = mapped_column(Text)
    signature_json: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    report_json: Mapped[str] = mapped_column(Text)
    report_hash: Mapped[str] = mapped_column(String(64))
    lineage_json: Mapped[str] = mapped_column(Text)


class VersionTransitionRow(Base):
    __tablename__ = "model_version_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
