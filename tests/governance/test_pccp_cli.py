from __future__ import annotations

from tests.governance.test_pccp_gate import ALICE, governed  # noqa: F401 - the fixture
from vitalops.audit import list_events
from vitalops.governance.deploy import deploy_version
from vitalops.governance.gate import run_pccp_check


def test_pccp_check_cli_records_then_exits_one(cli, governed, make_user):  # noqa: F811
    make_user("approver", "carol")
    passed = cli("pccp", "check", "deterioration", "1", "--json", user="carol")
    assert passed.exit_code == 0 and passed.json()["passed"] is True
    run_pccp_check(governed, ALICE, "deterioration", 1)
    deploy_version(governed, ALICE, "deterioration", 1, sites=["a"], mode="champion")
    failed = cli("pccp", "check", "deterioration", "3", "--site", "a", user="carol")
    assert failed.exit_code == 1 and "locked.input_signature" in failed.stderr
    with governed.session() as session:
        assert list_events(session, action="pccp.check", object_id="deterioration/3")[0].payload["passed"] is False
    listed = cli("models", "list", "--json", user="carol")
    assert listed.exit_code == 0 and listed.json()[0]["champions"] == ["a:v1"]
    self_approval = cli("models", "approve", "deterioration", "1", "--reason", "mine", "--json")
    assert self_approval.exit_code == 2
    shown = cli("models", "show", "deterioration", "3", user="carol")
    assert shown.exit_code == 0 and "deterioration v3" in shown.stdout
    assert "gate: closed beyond shadow" in shown.stdout and "Lifecycle" in shown.stdout
