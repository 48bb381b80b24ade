"""The lifecycle of a model version, as one transition table.

``draft -> validated -> approved -> retired`` and ``validated -> rejected``. An approved version
returns to ``validated`` only when its validation report changes, which voids its approvals.
Deployment is separate (see ``vitalops.registry.deployments``).
"""

from __future__ import annotations

from enum import StrEnum

from vitalops.errors import Conflict


class VersionState(StrEnum):
    DRAFT = "draft"
    VALIDATED = "validated"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETIRED = "retired"


_S = VersionState
TRANSITIONS: dict[VersionState, frozenset[VersionState]] = {
    _S.DRAFT: frozenset({_S.VALIDATED, _S.RETIRED}),
    _S.VALIDATED: frozenset({_S.APPROVED, _S.REJECTED, _S.RETIRED}),
    _S.APPROVED: frozenset({_S.RETIRED, _S.VALIDATED}),
    _S.REJECTED: frozenset(),
    _S.RETIRED: frozenset(),
}


def can_transition(current: VersionState | str, target: VersionState | str) -> bool:
    return VersionState(target) in TRANSITIONS[VersionState(current)]


def check_transition(current: VersionState | str, target: VersionState | str, *, version_ref: str) -> None:
    """Return when ``current -> target`` is legal; raise Conflict naming the allowed moves otherwise."""
    if not can_transition(current, target):
        allowed = sorted(state.value for state in TRANSITIONS[VersionState(current)])
        raise Conflict(
            f"{version_ref} is {VersionState(current).value} and cannot become {VersionState(target).value}"
            f" (allowed: {', '.join(allowed) or 'none'})",
            details={"from": str(current), "to": str(target), "allowed": allowed},
        )
