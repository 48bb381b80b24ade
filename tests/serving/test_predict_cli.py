"""``vitalops predict`` through the real entry point: the same service, the risk and reasons as a table."""

from __future__ import annotations


def test_predict_by_patient_key_prints_the_risk_and_reasons(cli, served, make_user, monkeypatch):
    monkeypatch.setenv("VITALOPS_LAKE_URI", served.lake.lake_root)
    _, key = make_user("clinician", "casey")
    monkeypatch.setenv("VITALOPS_API_KEY", key)
    table = served.training_set.table
    patient, at = table.column("patient_key")[7].as_py(), table.column("index_time")[7].as_py()
    result = cli("predict", "deterioration", "--site", "north", "--patient", patient, "--at", at.isoformat(), "--json")
    assert result.exit_code == 0, result.stderr
    body = result.json()
    assert body["patient_key"] == patient and body["version"] == 1 and body["input_kind"] == "patient"
    people = cli("predict", "deterioration", "--site", "north", "--patient", patient, "--at", at.isoformat())
    assert people.exit_code == 0 and "top factors" in people.stdout and "risk" in people.stdout
    both = cli("predict", "deterioration", "--site", "north")
    assert both.exit_code == 2 and "exactly one of --patient or --fhir" in both.stderr
    unknown = cli("predict", "deterioration", "--site", "north", "--patient", "0" * 64, "--at", at.isoformat())
    assert unknown.exit_code == 2 and "no facts" in unknown.stderr
