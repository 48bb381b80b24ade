"""Governance fixtures through the public services: registered sites and a plan put in force."""

from __future__ import annotations

from collections.abc import Sequence

from vitalops.auth import SYSTEM, Principal, Role
from vitalops.db import Database
from vitalops.governance.pccp import Pccp, decide_pccp, propose_pccp
from vitalops.sites import create_site

SCIENTIST = Principal(name="dana", roles=frozenset({Role.DATA_SCIENTIST}))
ALICE = Principal(name="alice", roles=frozenset({Role.APPROVER}), credential="key:alice", personal=True)
BOB = Principal(name="bob", roles=frozenset({Role.APPROVER}), credential="key:bob", personal=True)


def register_sites(database: Database, *codes: str) -> None:
    with database.session() as session:
        for code in codes:
            create_site(session, SYSTEM, code)


def plan_in_force(
    database: Database, name: str, spec_yaml: str, *, approvers: Sequence[Principal] = (ALICE,),
    proposer: Principal = SCIENTIST,
) -> Pccp:
    """Propose ``spec_yaml`` as ``proposer`` and approve it by each of ``approvers``."""
    plan = propose_pccp(database, proposer, name, spec_yaml)
    for approver in approvers:
        plan = decide_pccp(database, approver, name, plan.number, decision="approve", reason="reviewed the plan")
    return plan
