"""The whole loop through ``vitalops demo --no-serve``, as a newcomer runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitalops.auth.users import authenticate_key
from vitalops.cdshooks.demo import REPLAY_CALLS
from vitalops.db.tables.cdshooks import CardFeedbackRow
from vitalops.db.tables.serving import PredictionRow
from vitalops.errors import Unauthenticated
from vitalops.serving import on_challenger_side, site_deployments


def test_demo_builds_the_hospital_end_to_end(cli, database) -> None:
    result = cli("demo", "--no-serve", "--no-scenarios", "--json")
    assert result.exit_code == 0, result.stderr[-2000:]
    summary = result.json()
    assert {user["role"] for user in summary["users"]} == {
        "admin", "data_scientist", "approver", "operator", "clinician", "auditor", "ehr"}
    ingest = summary["ingest"]
    assert ingest["read"] == ingest["ingested"] + ingest["skipped"] + ingest["quarantined"]
    assert ingest["facts"] > ingest["ingested"]  # blood pressure panels and encounters give several facts
    assert summary["hospital"]["defects"]["unconvertible_unit"] == 3
    assert {"json.invalid", "unit.unconvertible", "observation.no_value", "date.no_timezone"} <= set(
        ingest["quarantine_reasons"])
    # Lines that are not JSON cannot name their site: they are quarantined under "unknown".
    assert {site["site"] for site in summary["quality"]["sites"]} == {"north", "south", "east", "unknown"}
    for name in ("deterioration", "readmission"):
        dataset = summary["datasets"][name]
        assert dataset["rows"] > 0 and 0 < dataset["positives"] < dataset["labelled"]
    deterioration = summary["models"]["models"]["deterioration"]
    assert deterioration["champion"] == {"north": 1, "south": 1, "east": 1}
    assert deterioration["plan"]["state"] == "in_force" and deterioration["plan"]["proposed_by"] == "dana"
    assert deterioration["plan"]["approved_by"] == ["alex", "blake"]
    assert deterioration["approval_reason"].startswith("Reviewed validation report")
    assert "patients resampled" in deterioration["approval_reason"]
    blocked = deterioration["blocked"]
    assert blocked["passed"] is False and blocked["status"] == "failed"
    # The lab-outage candidate is worse than the champion, and the refusal names what the plan caught.
    caught = {"non_inferiority.auroc_drop", "acceptance.auroc_low"} & set(blocked["failed"])
    assert caught and blocked["deploy_beyond_shadow"].startswith("refused")
    assert all(name in blocked["deploy_beyond_shadow"] for name in caught)
    serving = summary["serving"]
    assert serving["canary"]["deployed"] == "canary:20 at south" and serving["replayed"] > 20
    served = {(row["site"], row["version"], row["mode"]): row["predictions"] for row in serving["served"]}
    assert ("north", 3, "shadow") not in served  # a shadow is never returned ...
    with database.session() as session:
        shadows = session.query(PredictionRow).filter(PredictionRow.mode == "shadow").count()
        south = session.query(PredictionRow).filter(PredictionRow.site == "south", PredictionRow.served.is_(True)).all()
        canary = site_deployments(session, "deterioration", "south").challenger
    cds = summary["cds_hooks"]
    # ... but scored and logged for every north patient, through REST and through CDS Hooks
    assert shadows == served[("north", 1, "champion")] + cds["calls"]
    assert canary is not None and canary[3] == "canary" and canary[4] == 20
    # Each south patient is on the side their key's hash with the canary's deployment id puts them.
    assert south and all((row.mode == "canary") == on_challenger_side(canary[2], str(row.patient_key), 20)
                         for row in south)
    assert all(example["factors"] for example in serving["examples"])
    batch = summary["batch"]  # the census at the end of the data, one batch run through the same routing
    assert batch["sites"] == ["east", "north", "south"] and batch["rows"] > 100
    assert batch["by_mode"]["champion"] > 0 and batch["by_mode"]["shadow_unserved"] > 0
    assert batch["archived"] == batch["predictions"] == batch["rows"] + batch["by_mode"].get("champion_unserved", 0) \
        + batch["by_mode"]["shadow_unserved"]
    # The demo EHR: trusted, its key in a file only its owner reads; its replayed calls gave cards and feedback.
    client_file = Path(summary["ehr_client"]["client_file"])
    assert client_file.stat().st_mode & 0o777 == 0o600 and summary["ehr_client"]["site"] == "north"
    assert cds["calls"] == REPLAY_CALLS and sum(cds["cards"].values()) == cds["calls"] - cds["no_card"] > 0
    assert set(cds["cards"]) <= {"info", "warning", "critical"}
    assert cds["feedback"]["accepted"] > 0 and cds["feedback"]["overridden"] > 0
    assert cds["feedback"]["accepted"] + cds["feedback"]["overridden"] == sum(cds["cards"].values())
    assert 0 < cds["review_queue"] <= cds["calls"] + serving["replayed"]
    with database.session() as session:
        feedback = session.query(CardFeedbackRow).all()
    assert len(feedback) == sum(cds["cards"].values())
    assert all(row.override_display for row in feedback if row.outcome == "overridden")
    monitoring = summary["monitoring"]  # the replayed day, against each version's training reference
    assert monitoring["windows"] == 1 and monitoring["results"] > 50
    assert all(flag["site"] in {"north", "south"} for flag in monitoring["flagged"])
    # The demo's alert rules, judged on the replayed day. Which site and version flag over 15% of
    # their patients varies between installations (each has its own pseudonym key, and the models
    # trained on its patients differ slightly), so what is asserted is the rule: every breach with
    # enough rows is one open alert, and nothing else is; the canary's score drift has too few rows
    # to judge, so nothing is rolled back.
    judged = [j for evaluation in monitoring["alerts"] for j in evaluation["judged"]]
    breaches = sorted((j["rule"], j["site"], j["version"]) for j in judged if j["state"] == "breach")
    alerts = monitoring["open_alerts"]
    assert sorted((a["rule"], a["site"], a["version"]) for a in alerts) == breaches
    assert all(a["value"] > a["threshold"] and a["n"] >= 30 and a["action_outcome"] for a in alerts)
    assert all(j["state"] == "insufficient_data" for j in judged if j["n"] < j["min_n"])
    assert {j["state"] for j in judged if j["rule"] == "canary-score-drift"} == {"insufficient_data"}
    with database.session() as session:
        assert site_deployments(session, "deterioration", "south").challenger is not None  # still a canary
    # the shadow trained on an extract without vitals sees them arrive: its missing rates are flagged
    assert {flag["metric_id"] for flag in monitoring["flagged"] if flag["version"] == 3} >= {
        "input_drift.missing_rate/heart_rate_last", "input_drift.missing_rate/creatinine_last"}
    assert summary["audit"]["ok"] is True and summary["audit"]["events"] > 20
    assert summary["audit"]["checkpoint_written"] is True  # verified as `audit verify` does, and checkpointed
    cards = summary["models"]["cards"]
    pages = {Path(card).name: Path(card).read_text() for card in cards}
    assert len(pages) == 6
    assert all("Key metrics" in text for name, text in pages.items() if not name.endswith("validation.html"))
    assert "Calibration" in pages["deterioration-v1.validation.html"]
    card = pages["deterioration-v1.md"]
    assert "Not cleared by any regulator" in card and "synthetic" in card and "Rapid response nurses" in card
    first_keys = {entry["user"]: entry["key"] for entry in summary["users"]}

    again = cli("demo", "--no-serve", "--no-scenarios", "--json")
    assert again.exit_code == 0 and again.json()["rebuilt"] is False
    assert again.json()["ehr_client"] == summary["ehr_client"] | {"registered": False}
    assert cli("audit", "verify", "--json").json()["ok"] is True
    with pytest.raises(Unauthenticated, match="revoked"), database.session() as session:
        authenticate_key(session, first_keys["alex"])  # running the demo again revoked its old keys
