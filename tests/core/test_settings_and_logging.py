from __future__ import annotations

import logging
import sys

import orjson
import pytest

from vitalops.core.logging import JsonFormatter, redact, request_id_var
from vitalops.core.settings import DEVELOPMENT_SECRET, Settings, get_settings, write_secrets_file
from vitalops.errors import ConfigError


def test_default_secrets_are_refused_outside_development(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VITALOPS_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("VITALOPS_SESSION_SECRET", raising=False)
    assert Settings(environment="development").pseudonym_key.get_secret_value() == DEVELOPMENT_SECRET
    with pytest.raises(ConfigError, match="VITALOPS_PSEUDONYM_KEY is still the development default"):
        Settings(environment="production")


def test_init_secrets_are_loaded_and_never_replaced(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("VITALOPS_HOME", str(home))
    monkeypatch.setenv("VITALOPS_ENVIRONMENT", "production")
    monkeypatch.delenv("VITALOPS_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("VITALOPS_SESSION_SECRET", raising=False)
    assert write_secrets_file(home) is True
    first = (home / "secrets.env").read_text()
    assert write_secrets_file(home) is False and (home / "secrets.env").read_text() == first
    assert (home / "secrets.env").stat().st_mode & 0o777 == 0o600
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.pseudonym_key.get_secret_value() != DEVELOPMENT_SECRET
        assert settings.pseudonym_key.get_secret_value() in first
        monkeypatch.setenv("VITALOPS_PSEUDONYM_KEY", "from-the-secrets-manager")
        get_settings.cache_clear()
        assert get_settings().pseudonym_key.get_secret_value() == "from-the-secrets-manager"
    finally:
        get_settings.cache_clear()


def test_redaction_drops_phi_keys_and_masks_identifier_shapes() -> None:
    cleaned = redact(
        {"mrn": "A123", "count": 3, "note": "call 555-123-4567", "detail": "SSN 123-45-6789 born 1950-02-03"}
    )
    assert cleaned["mrn"] == "[redacted]" and cleaned["note"] == "[redacted]" and cleaned["count"] == 3
    assert "123-45-6789" not in cleaned["detail"] and "1950-02-03" not in cleaned["detail"]


def test_log_lines_are_json_with_the_request_id_and_no_exception_text() -> None:
    token = request_id_var.set("req-12345678")
    try:
        try:
            raise ValueError("patient Jane Doe MRN 998877")
        except ValueError:
            record = logging.LogRecord("vitalops.test", logging.ERROR, __file__, 1, "failed for %s", ("x",),
                                       exc_info=sys.exc_info())
        record.birth_date = "1950-02-03"
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = orjson.loads(line)
    assert entry["request_id"] == "req-12345678" and entry["message"] == "failed for x"
    assert entry["exception"] == "ValueError" and "Jane" not in line and "998877" not in line
    assert entry["birth_date"] == "[redacted]"
