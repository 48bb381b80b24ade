"""Property-based fuzz of the OpenAPI against a real server on loopback: no input gets a 5xx.

Bounded and deterministic: a fixed example budget per operation and generation mode (a few
hundred requests in all), derandomized, no example database. The registry holds one model with one
validated version so that generated paths can reach past "not found" (the known names are mixed into
the path parameters). Runs as an approver, the role that reaches most routes (reads, approvals,
plans, checks, deployments, the audit trail), and as an admin on the user and site routes.
Every 4xx must be problem+json carrying the request id of its ``X-Request-ID`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import LiveServer, bearer
from tests.governance.plans import register_sites
from tests.governance.test_pccp_gate import _register, _table, create_deterioration_model
from vitalops.artifacts import open_store

EXAMPLES = 8
KNOWN = {"name": "deterioration", "model": "deterioration", "number": 1}


def _admin_route(method: str, path: str) -> bool:
    return path.startswith("/v1/users") or (path == "/v1/sites" and method == "POST")


def test_no_input_gets_a_server_error(live_server: LiveServer, database: Any, settings: Any,
                                      make_user: Callable[..., tuple[object, str]]) -> None:
    create_deterioration_model(database)
    register_sites(database, "a")
    _register(database, open_store(settings.artifacts_root), _table(1), ["heart_rate", "lactate"], 1)
    keys = {"approver": make_user("approver")[1], "admin": make_user("admin")[1]}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    failures: list[str] = []
    requests = [0]

    def run(strategy: Any, key: str) -> None:
        @hypothesis_settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: schemathesis.Case) -> None:
            requests[0] += 1
            response = case.call(base_url=live_server.url, headers=bearer(key), timeout=60)
            where = f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:120]}"
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {where}")
            elif response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])[0]
                request_id = response.headers.get("x-request-id", [None])[0]
                if not content_type.startswith("application/problem+json") or \
                        response.json().get("request_id") != request_id:
                    failures.append(f"{response.status_code} without problem+json and its request id: {where}")

        try:
            fuzz()
        except Unsatisfiable:  # a negative case of an operation that takes no input
            pass

    for result in schema.get_all_operations():
        operation = result.ok()
        key = keys["admin" if _admin_route(operation.method.upper(), operation.path) else "approver"]
        known = {p.name: KNOWN[p.name] for p in operation.path_parameters if p.name in KNOWN}
        run(operation.as_strategy(GenerationMode.POSITIVE), key)
        run(operation.as_strategy(GenerationMode.NEGATIVE), key)
        if known:
            run(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known), key)
    assert requests[0] > 200
    assert not failures, f"{len(failures)} of {requests[0]} requests failed:\n" + "\n".join(failures[:40])
