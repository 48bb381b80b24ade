"""Who scores a patient at a site: the champion, and the challenger beside it (shadow, canary or A/B).

A canary or A/B share is chosen by hashing the pseudonymous patient key with the challenger's
deployment id (the id of the deployment event that put it in its slot): the same patient lands on
the same side for the life of that deployment, and a new deployment draws afresh. A patient is on
the challenger's side when ``sha256("<deployment id>:<patient key>")`` read as a number falls in
the first ``percent`` of 10,000 buckets. A shadow scores every patient, off the response path, and
is never returned. Without a patient key (a bare feature vector) the champion serves.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vitalops.db.tables.governance import DeploymentEventRow, SiteRow
from vitalops.db.tables.registry import ModelVersionRow
from vitalops.errors import Conflict, InvalidInput
from vitalops.governance.pccp import input_tolerance
from vitalops.registry.versions import model_row

BUCKETS = 10_000


@dataclass(frozen=True)
class Assignment:
    """One version scoring one request: ``served`` is the one whose answer is returned."""

    version: int
    version_id: int
    deployment_event_id: int
    mode: str  # champion | canary | ab | shadow
    served: bool


@dataclass(frozen=True)
class SiteDeployments:
    """The live slots of one model at one site, with the deployment event behind each."""

    model_id: int
    champion: tuple[int, int, int] | None  # (version number, version id, event id)
    challenger: tuple[int, int, int, str, int | None] | None  # (..., mode, percent)
    latest_event_id: int


def bucket(deployment_id: int, patient_key: str) -> int:
    """The patient's bucket (0 to 9,999) for a deployment: stable for its life, independent across deployments."""
    digest = hashlib.sha256(f"{deployment_id}:{patient_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def on_challenger_side(deployment_id: int, patient_key: str, percent: int) -> bool:
    return bucket(deployment_id, patient_key) < percent * BUCKETS // 100


def site_deployments(session: Session, name: str, site: str) -> SiteDeployments:
    """The current champion and challenger of ``name`` at ``site`` (latest event per slot)."""
    model = model_row(session, name)
    rows = list(
        session.scalars(
            select(DeploymentEventRow)
            .where(DeploymentEventRow.model_id == model.id, DeploymentEventRow.site == site)
            .order_by(DeploymentEventRow.id)
        )
    )
    latest: dict[str, DeploymentEventRow] = {row.slot: row for row in rows}
    ids = [r.version_id for r in latest.values() if r.version_id is not None]
    query = select(ModelVersionRow.id, ModelVersionRow.number).where(ModelVersionRow.id.in_(ids))
    numbers = {row.id: row.number for row in session.execute(query)}
    champion_row, challenger_row = latest.get("champion"), latest.get("challenger")
    champion = None
    if champion_row is not None and champion_row.version_id is not None:
        champion = (numbers[champion_row.version_id], champion_row.version_id, champion_row.id)
    challenger = None
    if challenger_row is not None and challenger_row.version_id is not None:
        challenger = (numbers[challenger_row.version_id], challenger_row.version_id, challenger_row.id,
                      challenger_row.mode, challenger_row.percent)
    return SiteDeployments(model.id, champion, challenger, rows[-1].id if rows else 0)


def route(deployments: SiteDeployments, patient_key: str | None, *, name: str, site: str) -> list[Assignment]:
    """The assignments for one request: exactly one served, and a shadow (or the unserved side) beside it.

    Conflict when no champion is deployed at the site: nothing may answer for care there.
    """
    if deployments.champion is None:
        raise Conflict(f"model '{name}' has no champion deployed at site '{site}'", details={"site": site})
    number, version_id, event_id = deployments.champion
    champion = Assignment(number, version_id, event_id, "champion", served=True)
    if deployments.challenger is None:
        return [champion]
    c_number, c_version_id, c_event_id, mode, percent = deployments.challenger
    if mode == "shadow":
        return [champion, Assignment(c_number, c_version_id, c_event_id, "shadow", served=False)]
    if patient_key is not None and percent is not None and on_challenger_side(c_event_id, patient_key, percent):
        return [Assignment(c_number, c_version_id, c_event_id, mode, served=True),
                Assignment(number, version_id, event_id, "champion", served=False)]
    return [champion]


class RoutingCache:
    """A worker's copy of each (model, site)'s deployments, checked against the database on every call.

    The check is one query for the newest deployment event of the model at the site: any deploy or
    rollback (from any worker) changes it, and the copy is rebuilt, so a change is seen by the next
    request. The registered sites, and each model's input-range tolerance from its plan in force,
    are re-read every ``site_ttl_s`` seconds (a site registered a moment ago may be refused until
    then; no site is ever served that is not registered).
    """

    def __init__(self, site_ttl_s: float = 5.0) -> None:
        self.site_ttl_s = site_ttl_s
        self._models: dict[str, int] = {}
        self._deployments: dict[tuple[str, str], SiteDeployments] = {}
        self._tolerances: dict[str, tuple[float, float]] = {}  # name -> (tolerance, read at)
        self._sites: frozenset[str] = frozenset()
        self._sites_read_at = float("-inf")
        self._lock = threading.Lock()

    def require_site(self, session: Session, site: str) -> None:
        """InvalidInput (listing the registered sites) when ``site`` is not registered."""
        now = time.monotonic()
        if site not in self._sites or now - self._sites_read_at > self.site_ttl_s:
            with self._lock:
                self._sites = frozenset(session.scalars(select(SiteRow.code)))
                self._sites_read_at = now
        if site not in self._sites:
            known = ", ".join(sorted(self._sites)) or "none yet ('vitalops sites add CODE')"
            raise InvalidInput(f"site '{site}' is not registered here; registered sites: {known}",
                               details={"field": "site"})

    def range_tolerance(self, session: Session, name: str) -> float:
        """The plan in force's ``inputs.range_tolerance`` for ``name`` (``governance.pccp.input_tolerance``)."""
        now = time.monotonic()
        cached = self._tolerances.get(name)
        if cached is not None and now - cached[1] <= self.site_ttl_s:
            return cached[0]
        tolerance = input_tolerance(session, name)
        self._tolerances[name] = (tolerance, now)
        return tolerance

    def deployments(self, session: Session, name: str, site: str) -> SiteDeployments:
        model_id = self._models.get(name)
        if model_id is None:
            model_id = self._models.setdefault(name, model_row(session, name).id)
        latest = session.scalar(
            select(func.coalesce(func.max(DeploymentEventRow.id), 0)).where(
                DeploymentEventRow.model_id == model_id, DeploymentEventRow.site == site
            )
        )
        cached = self._deployments.get((name, site))
        if cached is not None and cached.latest_event_id == latest:
            return cached
        fresh = site_deployments(session, name, site)
        self._deployments[(name, site)] = fresh
        return fresh
