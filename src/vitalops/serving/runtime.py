"""The predictor runtime: each version's artifact loaded once per worker, verified, and kept warm.

A version's artifact never changes (it is content-addressed), so a loaded version is cached by its
id for the life of the process. What runs where is read from the database on every request, so a
deployment change is seen at once by every worker without a restart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from vitalops.artifacts import ArtifactStore, Predictor, load_predictor
from vitalops.db.tables.registry import ModelVersionRow
from vitalops.errors import IntegrityError, NotFound, ServiceUnavailable
from vitalops.features.definition_sets import get_definitions
from vitalops.features.definitions import DatasetSpec
from vitalops.registry.input_ranges import InputRanges
from vitalops.registry.schemas import RiskBands
from vitalops.registry.versions import get_model, get_version_by_id
from vitalops.serving.explain import Explanation, FeatureMeaning, explain_row, feature_meanings, method_of
from vitalops.terminology import Terminology

BANDS = ("low", "moderate", "high")


@dataclass(frozen=True)
class Score:
    score: float
    band: str
    decision: bool
    explanation: Explanation


@dataclass(frozen=True)
class LoadedVersion:
    """A version ready to score: its predictor, operating threshold, bands and definitions."""

    model: str
    number: int
    version_id: int
    artifact_sha256: str
    threshold: float
    outcome: str
    bands: RiskBands
    predictor: Predictor
    spec: DatasetSpec | None
    meanings: dict[str, FeatureMeaning]
    #: The training range of each input (None for a version registered before ranges were recorded).
    ranges: InputRanges | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.predictor.feature_names

    @property
    def explanation_method(self) -> str:
        return method_of(self.predictor)

    def band_of(self, score: float) -> str:
        if score >= self.bands.high:
            return "high"
        return "moderate" if score >= self.bands.moderate else "low"

    def score_rows(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class probabilities of many rows through the fast predictor."""
        return self.predictor.predict_proba(matrix)

    def score_row(self, row: np.ndarray) -> Score:
        """One row: probability, band, decision at the operating threshold, and its explanation."""
        score = float(self.predictor.predict_proba(row.reshape(1, -1))[0])
        explanation = explain_row(self.predictor, row, self.meanings)
        return Score(score, self.band_of(score), score >= self.threshold, explanation)


def default_bands(threshold: float) -> RiskBands:
    """High from the operating threshold, moderate from half of it (when no bands are declared)."""
    high = min(max(threshold, 1e-6), 1 - 1e-6)
    return RiskBands(moderate=high / 2, high=high)


class Runtime:
    """Loaded versions of this worker, by version id (thread-safe; loads each artifact once)."""

    def __init__(self, store: ArtifactStore, terminology: Terminology | None) -> None:
        self.store = store
        self.terminology = terminology
        self._loaded: dict[int, LoadedVersion] = {}
        self._lock = threading.Lock()

    def version(self, session: Session, version_id: int) -> LoadedVersion:
        """The loaded version; the artifact is read and verified the first time only. ServiceUnavailable
        when it fails verification (it is then never served) or is missing from the store."""
        loaded = self._loaded.get(version_id)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(version_id)
            if loaded is None:
                loaded = self._load(session, version_id)
                self._loaded[version_id] = loaded
        return loaded

    def _load(self, session: Session, version_id: int) -> LoadedVersion:
        version = get_version_by_id(session, version_id)
        model = get_model(session, version.model)
        try:
            predictor = load_predictor(version.artifact_sha256, store=self.store)
        except IntegrityError:
            raise ServiceUnavailable(
                f"{version.model} v{version.number} is not served: its artifact fails verification",
                details={"reason": "artifact_integrity", "artifact_sha256": version.artifact_sha256},
            ) from None
        except NotFound:  # the version is registered and deployed: a missing artifact is ours, not the caller's
            raise ServiceUnavailable(
                f"{version.model} v{version.number} is not served: its artifact is not in the store",
                details={"reason": "artifact_missing", "artifact_sha256": version.artifact_sha256},
            ) from None
        row = session.get_one(ModelVersionRow, version_id)
        try:
            spec: DatasetSpec | None = get_definitions(session, row.definitions_version)
        except NotFound:
            spec = None  # served from feature vectors only
        bands = model.profile.risk_bands or default_bands(version.threshold)
        return LoadedVersion(
            model=version.model,
            number=version.number,
            version_id=version_id,
            artifact_sha256=version.artifact_sha256,
            threshold=float(version.threshold),
            outcome=model.output_meaning,
            bands=bands,
            predictor=predictor,
            spec=spec,
            meanings=feature_meanings(spec, self.terminology),
            ranges=InputRanges.from_lineage(version.lineage, predictor.feature_names),
        )
