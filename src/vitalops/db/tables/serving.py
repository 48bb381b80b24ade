"""Tables of serving: registered definition sets, the prediction log, observed outcomes, and the counts of
prediction requests that failed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime


class DefinitionSetRow(Base):
    """A feature, cohort and label definition set by its version hash, so that a model version trained on
    it can be served from a patient's facts or FHIR resources with exactly the definitions it learned."""

    __tablename__ = "definition_sets"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    document_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PredictionRow(Base):
    """One prediction of one model version for one patient (or feature vector), served or shadow.

    ``features_json`` is the exact vector scored (in the version's feature order) so the score and
    the explanation can be recomputed from this row and the artifact alone.
    """

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64))
    patient_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    deployment_event_id: Mapped[int | None] = mapped_column(ForeignKey("deployment_events.id"), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))  # champion | canary | ab | shadow | direct
    served: Mapped[bool] = mapped_column(Boolean)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_kind: Mapped[str] = mapped_column(String(16))  # features | patient | fhir
    features_json: Mapped[str] = mapped_column(Text)
    definitions_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))
    decision: Mapped[bool] = mapped_column(Boolean)
    explanation_method: Mapped[str] = mapped_column(String(64))
    explanation_json: Mapped[str] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))


class OutcomeRow(Base):
    """An observed outcome of a prediction, from one source (the EHR, a registry, the lake's label)."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("prediction_id", "source", name="uq_outcomes_prediction_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[int] = mapped_column(Integer)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ServingErrorCountRow(Base):
    """How many prediction requests of a model at a site failed in one UTC hour, by error code.

    One row per (model, version, site, hour, served, code), incremented in place, so the table grows
    with hours, not requests. ``version`` is 0 when the request failed before a version was chosen
    (an unknown patient key, no champion at the site); ``served`` is False for a shadow's scoring,
    which fails only itself. ``code`` is the error's stable code (``invalid_input``,
    ``service_unavailable``, ``internal_error`` for an unexpected exception) and ``http_status`` the
    status the caller was answered with. No patient key, value or message is kept.
    """

    __tablename__ = "serving_error_counts"
    __table_args__ = (UniqueConstraint("model_id", "version", "site", "hour_start", "served", "code",
                                       name="uq_serving_error_counts_model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    hour_start: Mapped[datetime] = mapped_column(UtcDateTime())
    served: Mapped[bool] = mapped_column(Boolean)
    code: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
