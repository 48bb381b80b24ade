"""Tables of CDS Hooks: trusted EHR clients (issuers), JWT ids seen (replay), clinicians' card feedback,
and the human-review queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vitalops.db.tables.base import Base, UtcDateTime


class EhrClientRow(Base):
    """An EHR trusted to call the CDS services: the JWT issuer, its keys (a JWK Set configured here, or
    the ``jku`` URLs it may name), the FHIR servers it may send as ``fhirServer``, the site its
    patients are scored at, and its service account."""

    __tablename__ = "ehr_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512), unique=True)
    jwks_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    jku_allow_json: Mapped[str] = mapped_column(Text)  # JSON list of exact URLs
    fhir_servers_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of base URLs; NULL: any
    site: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class JwtIdRow(Base):
    """A JWT id an issuer has used, kept until the token expires so that a replay is refused by every worker."""

    __tablename__ = "cds_jwt_ids"

    issuer: Mapped[str] = mapped_column(String(512), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class CardFeedbackRow(Base):
    """One feedback item of a clinician on a card, linked to the prediction the card showed.

    The same item sent again (same card, outcome and outcome time) is stored once.
    """

    __tablename__ = "cds_feedback"
    __table_args__ = (UniqueConstraint("card_uuid", "outcome", "outcome_at", name="uq_cds_feedback_card_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_uuid: Mapped[str] = mapped_column(String(36))
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    service_id: Mapped[str] = mapped_column(String(128))
    issuer: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(16))  # accepted | overridden
    accepted_suggestions_json: Mapped[str] = mapped_column(Text)
    override_system: Mapped[str | None] = mapped_column(String(256), nullable=True)
    override_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override_display: Mapped[str | None] = mapped_column(String(256), nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReviewItemRow(Base):
    """A prediction held for a clinician's review, why, and the decision taken on it."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), unique=True)
    model: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(64), index=True)
    reasons_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | accepted | overridden
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
