from __future__ import annotations

import sqlalchemy as sa

from vitalops.db import Database


def test_init_is_idempotent_and_keeps_secrets(cli, settings) -> None:
    first = cli("init", "--json")
    assert first.exit_code == 0, first.stderr
    secrets_before = (settings.home / "secrets.env").read_text()
    second = cli("init", "--json")
    assert second.exit_code == 0 and second.json()["secrets"] == "kept"
    assert (settings.home / "secrets.env").read_text() == secrets_before


def test_users_and_keys_with_clear_errors(cli) -> None:
    assert cli("users", "add", "dana", "--role", "data_scientist", "--json").json()["role"] == "data_scientist"
    unknown = cli("users", "add", "erin", "--role", "wizard")
    assert unknown.exit_code == 2 and "unknown role 'wizard'" in unknown.stderr
    duplicate = cli("users", "add", "dana", "--role", "approver", "--json")
    assert duplicate.exit_code == 2 and duplicate.json()["error"]["code"] == "conflict"
    refused = cli("keys", "create", "dana", "--days", "3", "--json")
    assert refused.exit_code == 2 and refused.json()["error"]["code"] == "policy_violation"
    token = cli("users", "enroll", "dana", "--json").json()["token"]
    key = cli("keys", "redeem", token, "--days", "3", "--json").json()
    assert key["key"].startswith("vok_") and key["user"] == "dana" and key["personal"] is True
    assert cli("keys", "redeem", token).exit_code == 2  # spent
    cli("users", "add", "feed", "--role", "operator", "--service")
    service_key = cli("keys", "create", "feed", "--json").json()
    assert service_key["key"].startswith("vok_") and service_key["personal"] is False
    missing = cli("keys", "create", "nobody", "--json")
    assert missing.exit_code == 2 and "no user named 'nobody'" in missing.stdout


def test_named_users_are_held_to_their_role(cli) -> None:
    cli("users", "add", "casey", "--role", "clinician")
    denied = cli("users", "add", "mallory", "--role", "admin", user="casey")
    assert denied.exit_code == 2 and "may not users:manage" in denied.stderr
    log = cli("audit", "log", "--json").json()
    assert any(event["action"] == "access.denied" and event["actor"] == "casey" for event in log)


def test_audit_verify_catches_a_tampered_row(cli, database: Database) -> None:
    cli("users", "add", "dana", "--role", "data_scientist")
    cli("users", "enroll", "dana")
    assert cli("audit", "verify", "--json").json()["ok"] is True
    with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            connection.execute(sa.text("DROP TRIGGER audit_events_no_update"))
        connection.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"))
    broken = cli("audit", "verify", "--json")
    assert broken.exit_code == 1
    assert broken.json()["error"]["details"]["broken_at"] == 1


def test_audit_export_writes_json_lines(cli, tmp_path) -> None:
    cli("users", "add", "dana", "--role", "data_scientist")
    out = tmp_path / "audit.jsonl"
    result = cli("audit", "export", "--since", "2000-01-01", "--out", str(out), "--json")
    assert result.exit_code == 0 and result.json()["events"] == 1
    assert '"action":"user.created"' in out.read_text()
    bad = cli("audit", "export", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since 'yesterday'" in bad.stderr


def test_unreachable_database_is_a_plain_error(cli, monkeypatch) -> None:
    monkeypatch.setenv("VITALOPS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = cli("audit", "log")
    assert result.exit_code == 2
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr


def test_init_from_nothing_in_production_generates_secrets_first(cli, tmp_path, monkeypatch) -> None:
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("VITALOPS_HOME", str(fresh))
    monkeypatch.setenv("VITALOPS_ENVIRONMENT", "production")
    monkeypatch.delenv("VITALOPS_DATABASE_URL")
    result = cli("init", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["secrets"] == "generated" and (fresh / "secrets.env").exists()
    unnamed = cli("audit", "log")
    assert unnamed.exit_code == 2 and "set VITALOPS_API_KEY" in unnamed.stderr


def test_usage_errors_exit_2_with_the_parsers_message(cli) -> None:
    missing = cli("users", "add", "bob")
    assert missing.exit_code == 2 and "Missing option '--role'" in missing.stderr
    unknown = cli("nosuchcommand")
    assert unknown.exit_code == 2 and "No such command" in unknown.stderr
    assert "unexpected" not in missing.stderr + unknown.stderr
