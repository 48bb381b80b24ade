"""The EHR's side: a client file anyone can call the services with, ``vitalops cds call`` against the
running server, and replaying old data as of a moment."""

from __future__ import annotations

import socket
import stat
from datetime import UTC, datetime, timedelta

import orjson

from tests.cdshooks.spec_client import check_cards
from vitalops.auth import SYSTEM
from vitalops.cdshooks import add_client
from vitalops.cdshooks.ehr import EhrCredentials, patient_resources, replay_at


def _client_file(cds, tmp_path):
    credentials = EhrCredentials.generate("urn:test:ehr-cli", "cli-1", site="north")
    assert "d" in credentials.private_jwk and all("d" not in key for key in credentials.public_jwks()["keys"])
    with cds.served.database.session() as session:
        add_client(session, SYSTEM, credentials.issuer, site="north", jwks=credentials.public_jwks())
    path = tmp_path / "ehr" / "ehr-client.json"
    credentials.write(path)
    return path


def _fhir_folder(cds, tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    mine = {id(r) for r in cds.resources}
    others = [r for r in cds.served.lake.resources if id(r) not in mine][:300]
    lines = [orjson.dumps(r) for r in [cds.other_patient, *others, *cds.resources]]
    (folder / "export.ndjson").write_bytes(b"\n".join(lines) + b"\nnot json\n")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": cds.other_patient}]}
    (folder / "bundle.json").write_bytes(orjson.dumps(bundle))
    return folder


def test_the_client_file_is_private_and_cds_call_shows_the_patients_card(cds, cli, tmp_path):
    path = _client_file(cds, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    folder = _fhir_folder(cds, tmp_path)
    found = patient_resources(folder, [cds.patient_id])[cds.patient_id]
    assert len(found) == len(cds.resources) and all(r in cds.resources for r in found)
    args = ("cds", "call", "deterioration", "--patient", cds.patient_id, "--fhir", str(folder), "--url", cds.base,
            "--client", str(path))
    raw = cli(*args, "--json")
    assert raw.exit_code == 0, raw.stderr
    cards = check_cards(raw.json())
    assert len(cards) == 1 and cards[0]["suggestions"][0]["actions"][0]["resource"]["subject"] == {
        "reference": f"Patient/{cds.patient_id}"}
    shown = cli(*args)
    assert shown.exit_code == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert cards[0]["summary"].split(":")[0] in text and cards[0]["indicator"].upper() in text
    assert "What drives it" in text and "Source: VitalOps deterioration v1" in text
    assert "Override reasons:" in text and all(r["display"] in text for r in cards[0]["overrideReasons"])
    assert "Record this risk assessment in the chart" in text
    assert cds.other_patient["id"] not in shown.stdout + raw.stdout
    # Each call signed its own token: a second call is no replay.
    assert cli(*args, "--json").exit_code == 0


def test_cds_call_errors_are_plain_words_and_exit_2(cds, cli, tmp_path):
    path = _client_file(cds, tmp_path)
    folder = _fhir_folder(cds, tmp_path)
    base = ("cds", "call", "deterioration", "--patient", cds.patient_id, "--fhir", str(folder))
    missing = cli(*base, "--url", cds.base, "--client", str(tmp_path / "nowhere.json"))
    assert missing.exit_code == 2 and "no EHR client file" in missing.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = cli(*base, "--url", f"http://127.0.0.1:{port}", "--client", str(path))
    assert down.exit_code == 2 and "no VitalOps server answers" in down.stderr and "Traceback" not in down.stderr
    unknown = cli("cds", "call", "no-such-model", "--patient", cds.patient_id, "--fhir", str(folder), "--url",
                  cds.base, "--client", str(path))
    assert unknown.exit_code == 2 and "no CDS service 'no-such-model'" in unknown.stderr
    nobody = cli("cds", "call", "deterioration", "--patient", "no-such-patient", "--fhir", str(folder), "--url",
                 cds.base, "--client", str(path))
    assert nobody.exit_code == 2 and "no Patient with that id" in nobody.stderr
    assert cli("cds", "call", "deterioration", "--fhir", str(folder)).exit_code == 2  # no --patient
    assert cli(*base, "--at", "yesterday", "--client", str(path)).exit_code == 2
    stranger = EhrCredentials.generate("urn:test:not-trusted", "x")
    stranger.write(tmp_path / "stranger.json")
    refused = cli(*base, "--url", cds.base, "--client", str(tmp_path / "stranger.json"), "--json")
    assert refused.exit_code == 2 and "(iss)" in refused.json()["error"]["message"]


def test_replay_keeps_what_was_known_at_the_moment_and_moves_every_time_to_now():
    moment = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
    now = datetime(2026, 12, 2, 9, 30, 15, tzinfo=UTC)
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-06-01"}
    seen = {"resourceType": "Observation", "id": "o1", "meta": {"lastUpdated": "2024-03-05T04:50:00-05:00"},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-03-05T04:40:00-05:00",
            "issued": "2024-03-05T09:50:00Z"}
    later = seen | {"id": "o2", "meta": {"lastUpdated": "2024-03-05T10:00:01Z"}}
    admitted = {"resourceType": "Encounter", "id": "e1",
                "meta": {"versionId": "1", "lastUpdated": "2024-03-04T08:00:00Z"}, "status": "in-progress",
                "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-03-04T08:00:00Z"}}
    discharged = admitted | {"meta": {"versionId": "2", "lastUpdated": "2024-03-06T08:00:00Z"}, "status": "finished",
                             "period": {"start": "2024-03-04T08:00:00Z", "end": "2024-03-06T08:00:00Z"}}
    replayed = replay_at([patient, seen, later, admitted, discharged], moment, now)
    by_id = {r["id"]: r for r in replayed}
    assert set(by_id) == {"p1", "o1", "e1"} and by_id["e1"]["status"] == "in-progress"
    delta = now - moment
    moved = datetime.fromisoformat(by_id["o1"]["effectiveDateTime"])
    assert moved == datetime.fromisoformat("2024-03-05T04:40:00-05:00") + delta
    assert moved.utcoffset() == timedelta(hours=-5)  # the offset as written
    assert by_id["o1"]["issued"] == "2026-12-02T09:20:15Z"
    assert by_id["e1"]["period"]["start"] == (datetime(2024, 3, 4, 8, tzinfo=UTC) + delta).isoformat().replace(
        "+00:00", "Z")
    assert by_id["p1"]["birthDate"] == (datetime(1950, 6, 1) + timedelta(days=round(delta / timedelta(days=1)))
                                        ).date().isoformat()
    assert seen["effectiveDateTime"] == "2024-03-05T04:40:00-05:00"  # the input is left as it was
