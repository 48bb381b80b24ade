"""What the registry hands out and takes in: pydantic shapes, never ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RiskClass = Literal["low", "moderate", "high"]


class FeatureColumn(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str = "float64"


class Signature(BaseModel):
    """The input columns a version scores, in order, and what its output means."""

    model_config = ConfigDict(frozen=True)

    inputs: list[FeatureColumn]
    output: str = "probability of the positive outcome"

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.inputs]

    @classmethod
    def of(cls, feature_names: list[str] | tuple[str, ...], output: str | None = None) -> Signature:
        columns = [FeatureColumn(name=name) for name in feature_names]
        return cls(inputs=columns) if output is None else cls(inputs=columns, output=output)


class RiskBands(BaseModel):
    """Where a model's risk bands start, as probabilities: ``low`` below ``moderate``, ``high`` from
    ``high``. Without them a model's bands are: high from its version's operating threshold, moderate
    from half of it."""

    model_config = ConfigDict(extra="forbid")

    moderate: float = Field(gt=0.0, lt=1.0)
    high: float = Field(gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if self.moderate >= self.high:
            raise ValueError("the moderate band must start below the high band")
        return self


class ModelProfile(BaseModel):
    """What a model card says about a model beyond its identity; every field optional (a missing one
    reads "Not provided" on the card, never an invented claim)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    developer: str | None = None
    contact: str | None = None
    intended_users: str | None = None
    how_to_use: str | None = None
    out_of_scope: str | None = None
    regulatory_status: str | None = None
    limitations: list[str] = Field(default_factory=list)
    funding_source: str | None = None
    stakeholders: str | None = None
    publications: str | None = None
    patient_disclosure: str | None = None
    keywords: list[str] = Field(default_factory=list)
    risk_bands: RiskBands | None = None


class ModelCreate(BaseModel):
    """A model's identity: what it is for and who owns it. Locked once versions exist."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{1,63}$")
    intended_use: str = Field(min_length=1)
    clinical_owner: str = Field(min_length=1)
    risk_class: RiskClass = "moderate"
    target_population: str = Field(min_length=1)
    output_meaning: str = "probability of the positive outcome"
    approvals_required: Literal[1, 2] = 2
    profile: ModelProfile = Field(default_factory=ModelProfile)


class Model(ModelCreate):
    model_config = ConfigDict(extra="ignore")

    id: int
    created_at: datetime
    created_by: str


class VersionCreate(BaseModel):
    """Everything a new version records: lineage, the artifact and its validation."""

    source: Literal["trained", "registered"]
    state: Literal["draft", "validated"]
    dataset_uri: str | None = None
    dataset_fingerprint: str
    definitions_version: str
    code_version: str
    estimator: str
    flavor: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    signature: Signature
    artifact_sha256: str
    threshold: float
    report: dict[str, Any]
    report_hash: str
    lineage: dict[str, Any] = Field(default_factory=dict)
    reason: str = "registered"


class ModelVersion(BaseModel):
    id: int
    model: str
    number: int
    state: str
    source: str
    submitter: str
    created_at: datetime
    updated_at: datetime
    dataset_uri: str | None
    dataset_fingerprint: str
    definitions_version: str
    code_version: str
    estimator: str
    flavor: str
    hyperparameters: dict[str, Any]
    signature: Signature
    artifact_sha256: str
    threshold: float
    report_hash: str
    lineage: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.model} v{self.number}"


class Transition(BaseModel):
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime
