"""Typed settings from the environment (prefix ``VITALOPS_``) and the home folder's secrets file.

``get_settings()`` is cached; tests and the CLI call ``get_settings.cache_clear()`` after changing
the environment. Nothing here touches the database or the network.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vitalops.errors import ConfigError

#: The value a secret has until ``vitalops init`` generates a real one. Accepted only in development.
DEVELOPMENT_SECRET = "insecure-development-secret"  # noqa: S105 - the sentinel that is refused in production
SECRETS_FILE = "secrets.env"
SECRET_NAMES = ("pseudonym_key", "session_secret", "audit_key")
#: The audit trail's signed head checkpoints, outside the database (see docs/security.md).
AUDIT_CHECKPOINTS_FILE = "audit-checkpoints.jsonl"

Environment = Literal["development", "test", "production"]
_CADENCE_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
#: Scheduled monitoring no more often than this outside tests (a run reads the whole window's log).
MIN_MONITOR_CADENCE = timedelta(minutes=1)


class Settings(BaseSettings):
    """Everything an installation can configure. See docs/configuration in the README."""

    model_config = SettingsConfigDict(env_prefix="VITALOPS_", extra="ignore")

    environment: Environment = "development"
    home: Path = Path(".vitalops")
    database_url: str | None = None
    lake_uri: str | None = None
    artifacts_uri: str | None = None
    #: The online store serving patients' recent facts by key: ``redis://host:port/db`` in
    #: production; unset, a SQLite file ``online.db`` in the home folder.
    online_store_url: str | None = None
    pseudonym_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    session_secret: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    #: The HMAC key of the audit chain and its checkpoints; kept outside the database.
    audit_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    #: Where the audit trail's signed head checkpoints are kept (default: in the home folder).
    audit_checkpoints: Path | None = None
    log_level: str = "INFO"
    log_json: bool = True
    #: The user the command line acts as; see docs/security.md.
    user: str | None = None
    #: The command line's credential: a person's own API key. Governance acts from the command line
    #: need it; ``user`` alone names who is acting but proves nothing (docs/security.md).
    api_key: SecretStr | None = None
    api_key_days: int = Field(default=90, ge=1, le=3650)
    #: SMART Backend Services credentials for ``vitalops ingest --from-fhir`` (the EHR's token
    #: endpoint, the client id it registered for VitalOps, and the private key that signs assertions).
    fhir_token_url: str | None = None
    fhir_client_id: str | None = None
    fhir_private_key_file: Path | None = None
    fhir_key_id: str | None = None
    fhir_scope: str = "system/*.read"
    #: The EHR FHIR server base that RiskAssessments of predictions made from FHIR resources are
    #: POSTed to (with the SMART credentials above, scope ``system/RiskAssessment.write``); None: none are.
    fhir_publish_url: str | None = None
    #: The hospital's own code mappings (CSV: system,code,concept[,unit]) added to the shipped value sets.
    local_codes_file: Path | None = None
    small_group_min: int = Field(default=20, ge=1)
    #: The base URL EHRs call this service at (behind a proxy it differs from what the server sees):
    #: a CDS Hooks JWT's ``aud`` must equal this base plus the path called. None: the request's own URL.
    public_url: str | None = None
    #: Human review: a prediction whose score is within this distance of its threshold is queued.
    review_margin: float = Field(default=0.05, ge=0, le=0.5)
    #: ``beside``: an uncertain prediction is queued and its card still shown; ``instead``: queued, no card.
    review_mode: Literal["beside", "instead"] = "beside"
    #: Alert notifications (docs/alerts.md): a webhook that receives each alert as JSON, signed with
    #: HMAC-SHA256 of the body under ``alert_webhook_secret`` (header ``X-VitalOps-Signature``).
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    #: Email through this SMTP server (port, STARTTLS, optional login) to comma-separated recipients.
    alert_smtp_host: str | None = None
    alert_smtp_port: int = Field(default=25, ge=1, le=65535)
    alert_smtp_starttls: bool = False
    alert_smtp_user: str | None = None
    alert_smtp_password: SecretStr | None = None
    alert_email_from: str = "vitalops@localhost"
    alert_email_to: str = ""
    #: Attempts per notification, and the first retry's delay (doubled at each retry, capped at 30 s).
    alert_notify_attempts: int = Field(default=3, ge=1, le=10)
    alert_notify_backoff_seconds: float = Field(default=0.5, ge=0, le=30)
    #: The API server's monitoring cadence (``15m``, ``1h``, ``1d``; docs/monitoring.md): unset, no
    #: scheduled runs. Below a minute only with environment ``test``.
    monitor_every: str | None = Field(default=None, pattern=r"^[0-9]{1,6}(ms|s|m|h|d)$")
    #: The window length scheduled runs compute (as ``vitalops monitor run --window``).
    monitor_window: str = Field(default="1d", pattern=r"^[0-9]{1,3}[hd]$")

    @model_validator(mode="after")
    def _refuse_unsigned_webhook(self) -> Settings:
        if self.alert_webhook_url and not (self.alert_webhook_secret and self.alert_webhook_secret.get_secret_value()):
            raise ConfigError("VITALOPS_ALERT_WEBHOOK_URL needs VITALOPS_ALERT_WEBHOOK_SECRET to sign each alert")
        return self

    @model_validator(mode="after")
    def _refuse_fast_cadence(self) -> Settings:
        cadence = self.monitor_cadence
        if cadence is not None and (cadence.total_seconds() <= 0
                                    or (cadence < MIN_MONITOR_CADENCE and self.environment != "test")):
            raise ConfigError("VITALOPS_MONITOR_EVERY must be at least 1m (shorter only with environment=test)")
        return self

    @property
    def monitor_cadence(self) -> timedelta | None:
        """``monitor_every`` as a duration (None: no scheduled monitoring)."""
        if self.monitor_every is None:
            return None
        number, unit = self.monitor_every.rstrip("msdh"), self.monitor_every.lstrip("0123456789")
        return timedelta(**{_CADENCE_UNITS[unit]: int(number)})

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "development":
            return self
        for name in SECRET_NAMES:
            if getattr(self, name).get_secret_value() == DEVELOPMENT_SECRET:
                raise ConfigError(
                    f"VITALOPS_{name.upper()} is still the development default; "
                    f"run 'vitalops init' or set it before running with environment={self.environment}"
                )
        return self

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the metadata database (SQLite in the home folder by default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'vitalops.db').resolve()}"

    @property
    def lake_root(self) -> str:
        """Where the Delta tables live: a local folder or an fsspec URL."""
        return self.lake_uri or str((self.home / "lake").resolve())

    @property
    def audit_checkpoints_path(self) -> Path:
        return self.audit_checkpoints or (self.home / AUDIT_CHECKPOINTS_FILE).resolve()

    @property
    def artifacts_root(self) -> str:
        return self.artifacts_uri or str((self.home / "artifacts").resolve())

    @property
    def online_store(self) -> str:
        """The online store's URL: ``redis://...`` or ``sqlite:///<home>/online.db`` by default."""
        return self.online_store_url or f"sqlite:///{(self.home / 'online.db').resolve()}"


def _read_secrets_file(home: Path) -> dict[str, str]:
    path = home / SECRETS_FILE
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip().lower() in SECRET_NAMES:
            values[name.strip().lower()] = value.strip()
    return values


def home_from_environment() -> Path:
    """The home folder named by ``VITALOPS_HOME`` (default ``./.vitalops``), without loading settings."""
    return Path(os.environ.get("VITALOPS_HOME", ".vitalops"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The installation's settings: environment first, then the home folder's secrets file."""
    home = home_from_environment()
    from_file = {
        name: value
        for name, value in _read_secrets_file(home).items()
        if f"VITALOPS_{name.upper()}" not in os.environ
    }
    try:
        return Settings(**from_file)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe_invalid_settings(exc), details={"settings": [
            f"VITALOPS_{'_'.join(str(part) for part in error['loc']).upper()}" for error in exc.errors()]}) from None


def _describe_invalid_settings(exc: ValidationError) -> str:
    """Which settings are wrong and what they accept; never the value given (it may be a secret)."""
    problems = []
    for error in exc.errors():
        name = f"VITALOPS_{'_'.join(str(part) for part in error['loc']).upper()}"
        expected = (error.get("ctx") or {}).get("expected")
        if error["type"] in ("literal_error", "enum") and expected:
            problems.append(f"{name} must be one of {expected}")
        else:
            problems.append(f"{name} is not valid ({error['type'].replace('_', ' ')})")
    return "; ".join(problems)


def write_secrets_file(home: Path) -> bool:
    """Generate the installation's secrets into ``home/secrets.env`` (mode 0600) unless present.

    Returns True when a new file was written. Existing secrets are never replaced: the
    pseudonymization key changing would orphan every patient key already in the lake. A secret
    this release added (the audit key) is appended to an existing file.
    """
    path = home / SECRETS_FILE
    if path.exists():
        missing = [name for name in SECRET_NAMES if name not in _read_secrets_file(home)]
        if missing:
            separator = "" if path.read_text(encoding="utf-8").endswith("\n") else "\n"
            with path.open("a", encoding="utf-8") as handle:
                handle.write(separator + "".join(f"{name.upper()}={secrets.token_urlsafe(48)}\n" for name in missing))
        return False
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"{name.upper()}={secrets.token_urlsafe(48)}" for name in SECRET_NAMES]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return True
