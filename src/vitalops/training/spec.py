"""Training specs: a YAML file naming the model, its dataset, estimator, split, threshold rule and minimums.

Errors name the file and the field, never a value from a patient's record.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitalops.errors import InvalidInput
from vitalops.registry.schemas import ModelCreate
from vitalops.training.estimators import get_estimator_kind


class DatasetRef(BaseModel):
    """Either feature definitions to build a point-in-time training set from, or a prebuilt dataset."""

    model_config = ConfigDict(extra="forbid")

    spec: str | None = None
    uri: str | None = None
    exclude_features: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetRef:
        if (self.spec is None) == (self.uri is None):
            raise ValueError("give exactly one of 'spec' (feature definitions) or 'uri' (a prebuilt dataset)")
        return self


class SplitSpec(BaseModel):
    """Temporal split (before a date, or the earliest fraction of index times) plus held-out sites."""

    model_config = ConfigDict(extra="forbid")

    train_before: date | None = None
    train_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    external_sites: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_rule(self) -> SplitSpec:
        if (self.train_before is None) == (self.train_fraction is None):
            raise ValueError("give exactly one of 'train_before' or 'train_fraction'")
        return self


class ThresholdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["sensitivity", "alert_budget", "fixed"]
    value: float
    #: For alert budgets: the patient-days one dataset row stands for (one scored prediction per day: 1).
    patient_days_per_row: float = Field(default=1.0, gt=0.0)


class ValidationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_resamples: int = Field(default=200, ge=0, le=10_000)
    small_group_min: int | None = Field(default=None, ge=1)


class TrainingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelCreate
    dataset: DatasetRef
    estimator: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    split: SplitSpec
    seed: int = 0
    threshold: ThresholdSpec
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    minimums: dict[str, float] = Field(default_factory=dict)
    pccp: str | None = None
    #: Where relative paths in the spec are resolved from (the spec file's folder).
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else (self.base_dir / path)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def spec_from_dict(document: Any, *, source: str, base_dir: Path | None = None) -> TrainingSpec:
    """Validate a parsed spec; InvalidInput naming ``source`` and the first bad field."""
    if not isinstance(document, dict):
        raise InvalidInput(f"{source}: a training spec must be a mapping")
    try:
        spec = TrainingSpec.model_validate({**document, "base_dir": base_dir or Path(".")})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(
            f"{source}: field '{_field_path(first['loc'])}': {first['msg']}",
            details={"file": source, "field": _field_path(first["loc"])},
        ) from None
    try:
        get_estimator_kind(spec.estimator)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: field 'estimator': {exc.message}", details=exc.details) from None
    return spec


def load_training_spec(path: Path | str) -> TrainingSpec:
    """Read and validate a training spec YAML file."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"training spec {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path}{where}: not valid YAML") from None
    return spec_from_dict(document, source=str(path), base_dir=path.parent)
