"""The Bulk Data client against a spec-following Bulk Data server with SMART Backend Services."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from bulk_server import ASSERTION_TYPE, BulkDataServer, RegisteredClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vitalops.errors import Conflict, InvalidInput, ServiceUnavailable, Unauthenticated
from vitalops.fhir.bulk import STATE_FILE, BulkTransport, download_export, kickoff_url
from vitalops.fhir.readers import iter_resources
from vitalops.fhir.smart import BackendServicesAuth

CLIENT_ID = "vitalops-test-client"


def _pem_pair(private_key: Any) -> tuple[bytes, bytes]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _hospital() -> list[dict[str, Any]]:
    """Three patients with encounters and observations; patient p3 changed recently."""
    resources: list[dict[str, Any]] = []
    for number in (1, 2, 3):
        updated = "2025-05-01T00:00:00Z" if number == 3 else "2024-01-01T00:00:00Z"
        resources.append({"resourceType": "Patient", "id": f"p{number}", "meta": {"lastUpdated": updated}})
        resources.append(
            {
                "resourceType": "Encounter",
                "id": f"e{number}",
                "subject": {"reference": f"Patient/p{number}"},
                "meta": {"lastUpdated": updated},
            }
        )
        for k in range(3):
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{number}-{k}",
                    "status": "final",
                    "subject": {"reference": f"Patient/p{number}"},
                    "meta": {"lastUpdated": updated},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "valueQuantity": {"value": 70 + k, "unit": "/min"},
                }
            )
    return resources


@pytest.fixture
def server(rsa_keys: tuple[bytes, bytes]) -> Any:
    with BulkDataServer(
        _hospital(), groups={"cohort-a": ["p1", "p2"]}, client=RegisteredClient(CLIENT_ID, rsa_keys[1])
    ) as running:
        yield running


def _auth(server: BulkDataServer, private_pem: bytes, **overrides: Any) -> BackendServicesAuth:
    return BackendServicesAuth(
        token_url=server.token_url, client_id=CLIENT_ID, private_key_pem=private_pem, key_id="k1", **overrides
    )


def _ids(folder: Path) -> Counter[str]:
    return Counter(record.resource["resourceType"] for record in iter_resources(folder) if record.resource)


def test_system_export_downloads_every_file_with_the_token(server: BulkDataServer, rsa_keys, tmp_path: Path) -> None:
    server.max_lines_per_file = 4
    seen: list[tuple[str, float | None]] = []
    paths = download_export(
        server.base_url,
        tmp_path,
        auth=_auth(server, rsa_keys[0]),
        progress=lambda stage, fraction: seen.append((stage, fraction)),
    )
    assert [p.name for p in paths] == [
        "Encounter.ndjson",
        "Observation.001.ndjson",
        "Observation.002.ndjson",
        "Observation.003.ndjson",
        "Patient.ndjson",
    ]
    assert _ids(tmp_path) == {"Patient": 3, "Encounter": 3, "Observation": 9}
    assert len(server.kickoffs) == 1 and server.token_requests == 1  # the token is cached
    assert all(server.download_auth)  # requiresAccessToken: the bearer token went with every file
    fractions = [f for stage, f in seen if stage == "exporting"]
    assert fractions == [pytest.approx(0.33), pytest.approx(0.66)]
    assert seen[-1] == ("downloaded", 1.0)
    state = orjson.loads((tmp_path / STATE_FILE).read_bytes())
    assert all(entry["sha256"] and entry["bytes"] > 0 for entry in state["files"])
    assert not list(tmp_path.glob("*.part"))
    assert all(job.deleted for job in server.jobs.values())  # released after the download


def test_since_type_and_level_reach_the_server(server: BulkDataServer, rsa_keys, tmp_path: Path) -> None:
    auth = _auth(server, rsa_keys[0])
    since = datetime(2025, 1, 1, 9, 30, tzinfo=UTC)
    download_export(server.base_url, tmp_path / "since", since=since, types=["Patient", "Observation"], auth=auth)
    assert _ids(tmp_path / "since") == {"Patient": 1, "Observation": 3}  # only p3 changed since
    assert server.kickoffs[-1]["_since"] == ["2025-01-01T09:30:00.000000Z"]
    assert server.kickoffs[-1]["_type"] == ["Patient,Observation"]

    download_export(server.base_url, tmp_path / "group", level="group:cohort-a", auth=auth)
    assert _ids(tmp_path / "group") == {"Patient": 2, "Encounter": 2, "Observation": 6}
    download_export(server.base_url, tmp_path / "patient", level="patient", types=["Encounter"], auth=auth)
    assert _ids(tmp_path / "patient") == {"Encounter": 3}
    with pytest.raises(InvalidInput, match="level"):
        kickoff_url(server.base_url, level="group:../etc")
    with pytest.raises(InvalidInput, match="time zone"):
        kickoff_url(server.base_url, since=datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test


def test_es384_keys_work_too(tmp_path: Path) -> None:
    private, public = _pem_pair(ec.generate_private_key(ec.SECP384R1()))
    with BulkDataServer(_hospital(), client=RegisteredClient(CLIENT_ID, public)) as server:
        paths = download_export(server.base_url, tmp_path, auth=_auth(server, private, algorithm="ES384"))
    assert len(paths) == 3


def test_token_endpoint_rejects_bad_assertions(server: BulkDataServer, rsa_keys) -> None:
    private, _ = rsa_keys
    now = int(time.time())
    good = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": server.token_url, "exp": now + 240}
    other_key, _ = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    cases = {
        "wrong aud": (dict(good, aud=server.base_url, jti="a1"), private),
        "expired": (dict(good, exp=now - 10, jti="a2"), private),
        "too long": (dict(good, exp=now + 3600, jti="a3"), private),
        "bad signature": (dict(good, jti="a4"), other_key),
        "wrong sub": (dict(good, sub="someone-else", jti="a5"), private),
    }
    with httpx.Client() as http:

        def post(claims: dict[str, Any], key: bytes, scope: str = "system/*.read") -> httpx.Response:
            assertion = jwt.encode(claims, key, algorithm="RS384")
            return http.post(
                server.token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": scope,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
            )

        for name, (claims, key) in cases.items():
            response = post(claims, key)
            assert (response.status_code, response.json()) == (400, {"error": "invalid_client"}), name
        first = post(dict(good, jti="once"), private)
        assert first.status_code == 200 and first.json()["expires_in"] == 300
        assert post(dict(good, jti="once"), private).json() == {"error": "invalid_client"}  # reused jti
        assert post(dict(good, jti="b1"), private, scope="system/*.write").json() == {"error": "invalid_scope"}


def test_client_with_an_unregistered_key_is_refused(server: BulkDataServer, tmp_path: Path) -> None:
    stranger, _ = _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(Unauthenticated, match="invalid_client") as caught:
        download_export(server.base_url, tmp_path, auth=_auth(server, stranger))
    assert caught.value.details["status"] == 400
    assert server.kickoffs == []
    with pytest.raises(Unauthenticated, match="HTTP 401"):  # no auth at all: the server answers 401
        download_export(server.base_url, tmp_path / "anonymous")


def test_assertion_claims_follow_backend_services(server: BulkDataServer, rsa_keys) -> None:
    auth = _auth(server, rsa_keys[0])
    first, second = auth.client_assertion(), auth.client_assertion()
    claims = jwt.decode(first, rsa_keys[1], algorithms=["RS384"], audience=server.token_url)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert 0 < claims["exp"] - time.time() <= 300
    assert jwt.get_unverified_header(first)["kid"] == "k1"
    assert claims["jti"] != jwt.decode(second, rsa_keys[1], algorithms=["RS384"], audience=server.token_url)["jti"]
    with pytest.raises(InvalidInput):
        BackendServicesAuth(server.token_url, CLIENT_ID, rsa_keys[0], algorithm="HS256")


class _StopClient(Exception):
    """Stands for the process being stopped in the middle of the downloads."""


def test_resume_after_the_client_stops_midway(server: BulkDataServer, rsa_keys, tmp_path: Path) -> None:
    server.max_lines_per_file = 4

    def stop_after_two_files(stage: str, fraction: float | None) -> None:
        if stage.startswith("downloading") and fraction is not None and fraction >= 0.4:
            raise _StopClient

    with pytest.raises(_StopClient):
        download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]), progress=stop_after_two_files)
    assert sum(server.downloads.values()) == 2
    paths = download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert len(server.kickoffs) == 1  # the same job, no new export
    assert set(server.downloads.values()) == {1} and len(server.downloads) == 5  # each file fetched once
    assert len(paths) == 5 and _ids(tmp_path)["Observation"] == 9


def test_resume_polling_the_same_job_after_a_timeout(server: BulkDataServer, rsa_keys, tmp_path: Path) -> None:
    server.retry_after = "1"
    with pytest.raises(ServiceUnavailable, match="resume"):
        download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]), poll_max_seconds=0.5)
    assert (tmp_path / STATE_FILE).exists() and not list(tmp_path.glob("*.ndjson"))
    server.retry_after = "0"
    download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert len(server.kickoffs) == 1 and len(server.jobs) == 1
    assert _ids(tmp_path) == {"Patient": 3, "Encounter": 3, "Observation": 9}


def test_a_download_that_keeps_failing_is_fetched_on_the_rerun(server, rsa_keys, tmp_path: Path) -> None:
    server.fail_downloads["Observation-0.ndjson"] = 50
    with pytest.raises(ServiceUnavailable, match="Observation"):
        download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert not (tmp_path / "Observation.ndjson").exists()
    server.fail_downloads.clear()
    download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert server.downloads == {"Encounter-0.ndjson": 1, "Observation-0.ndjson": 1, "Patient-0.ndjson": 1}
    assert len(server.kickoffs) == 1


def test_transient_failures_are_retried(server: BulkDataServer, rsa_keys, tmp_path: Path) -> None:
    server.fail_next_status_with = [429, 503, 500]
    server.fail_downloads["Patient-0.ndjson"] = 2
    paths = download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert len(paths) == 3 and server.fail_next_status_with == []


def test_export_errors_carry_the_issue_code_but_not_the_server_text(server, rsa_keys, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        download_export(server.base_url, tmp_path / "a", level="group:nobody", auth=_auth(server, rsa_keys[0]))
    assert refused.value.details == {"stage": "kick-off", "status": 404, "issue_code": "not-found"}
    server.fail_jobs_with = "exception"
    with pytest.raises(ServiceUnavailable) as failed:
        download_export(server.base_url, tmp_path / "b", auth=_auth(server, rsa_keys[0]))
    assert failed.value.details["issue_code"] == "exception"
    assert "Jane" not in str(failed.value) and "0048213" not in str(failed.value.to_dict())


def test_files_without_required_token_are_fetched_without_it(rsa_keys, tmp_path: Path) -> None:
    with BulkDataServer(
        _hospital(), client=RegisteredClient(CLIENT_ID, rsa_keys[1]), requires_access_token=False
    ) as server:
        download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert server.download_auth and not any(server.download_auth)


def test_another_export_in_the_same_folder_is_refused(server, rsa_keys, tmp_path: Path) -> None:
    download_export(server.base_url, tmp_path, types=["Patient"], auth=_auth(server, rsa_keys[0]))
    again = download_export(server.base_url, tmp_path, types=["Patient"], auth=_auth(server, rsa_keys[0]))
    assert [p.name for p in again] == ["Patient.ndjson"] and len(server.kickoffs) == 1  # already complete
    with pytest.raises(Conflict):
        download_export(server.base_url, tmp_path, types=["Encounter"], auth=_auth(server, rsa_keys[0]))


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    transport = BulkTransport(httpx.Client(), None)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert transport.retry_after(httpx.Response(202, headers={"Retry-After": "7"})) == 7
    assert 25 <= transport.retry_after(httpx.Response(202, headers={"Retry-After": later})) <= 30
    assert transport.retry_after(httpx.Response(202, headers={"Retry-After": "86400"})) == 120  # capped
    assert transport.retry_after(httpx.Response(202)) is None
    transport.http.close()


def test_a_job_the_server_forgot_is_started_again(server: BulkDataServer, rsa_keys, tmp_path: Path) -> None:
    server.retry_after = "1"
    with pytest.raises(ServiceUnavailable):
        download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]), poll_max_seconds=0.2)
    for job in server.jobs.values():
        job.deleted = True  # expired on the server
    server.retry_after = "0"
    paths = download_export(server.base_url, tmp_path, auth=_auth(server, rsa_keys[0]))
    assert len(server.kickoffs) == 2 and len(paths) == 3
