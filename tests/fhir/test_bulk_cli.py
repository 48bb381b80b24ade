"""``vitalops ingest --from-fhir``: a Bulk Data export from an EHR, authorized with SMART Backend
Services, downloaded and ingested as one governed batch."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bulk_server import BulkDataServer, RegisteredClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vitalops.synth import RESOURCE_TYPES, generate_hospital

CLIENT_ID = "vitalops-cli"


@pytest.fixture
def ehr(tmp_path: Path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "vitalops-client.pem"
    key_file.write_bytes(private_pem)
    export = tmp_path / "export"
    generate_hospital(export, patients=8, sites=["north"], seed=11)
    resources = [line for kind in RESOURCE_TYPES for line in (export / f"{kind}.ndjson").read_bytes().splitlines()]
    with BulkDataServer([orjson.loads(line) for line in resources],
                        client=RegisteredClient(CLIENT_ID, public_pem)) as server:
        yield server, key_file, len(resources)


def test_export_is_authorized_downloaded_and_ingested(cli, ehr) -> None:
    server, key_file, count = ehr
    cli("users", "add", "dana", "--role", "data_scientist")
    assert cli("sites", "add", "north").exit_code == 0  # the export's site tag, registered as the demo does
    result = cli("ingest", "--from-fhir", server.base_url, "--token-url", server.token_url, "--client-id", CLIENT_ID,
                 "--private-key", str(key_file), "--json", user="dana")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["read"] == count == report["ingested"] + report["skipped"] + report["quarantined"]
    assert list(report["per_site"]) == ["north"]
    assert report["facts"] > 0 and server.token_requests >= 1 and all(server.download_auth)


def test_no_patient_data_is_downloaded_for_someone_not_allowed_to_ingest(cli, ehr) -> None:
    server, key_file, _ = ehr
    cli("users", "add", "casey", "--role", "clinician")
    result = cli("ingest", "--from-fhir", server.base_url, "--token-url", server.token_url, "--client-id", CLIENT_ID,
                 "--private-key", str(key_file), user="casey")
    assert result.exit_code == 2 and "may not data:ingest" in result.stderr
    assert server.kickoffs == [] and server.token_requests == 0


def test_incomplete_credentials_are_a_clear_error(cli, ehr) -> None:
    server, _, _ = ehr
    result = cli("ingest", "--from-fhir", server.base_url, "--client-id", CLIENT_ID)
    assert result.exit_code == 2 and "--token-url and --private-key" in result.stderr
