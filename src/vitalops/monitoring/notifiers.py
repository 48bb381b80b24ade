"""Where alerts are sent: a signed webhook, email through the hospital's SMTP server, and the log.

A small base class and an explicit factory: ``notifiers_from_settings`` builds the configured ones
(the log always). ``deliver`` sends one message through each, retrying a failed send with
exponential backoff (``alert_notify_attempts`` tries, the first retry after
``alert_notify_backoff_seconds``, doubled each time, at most 30 s); a notifier that is still down
is recorded as failed and the others go on. Messages carry no patient data: model, version, site,
metric, value, threshold, window, severity, action; never a patient key. A failure is recorded as
its exception's type or the HTTP status, never its text.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import orjson

from vitalops.core.settings import Settings

SIGNATURE_HEADER = "X-VitalOps-Signature"
#: Seconds one webhook or SMTP exchange may take before it counts as a failed attempt.
SEND_TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0
log = logging.getLogger("vitalops.alerts")


class NotifyFailed(Exception):
    """One attempt failed; ``reason`` is safe to record (a status or an exception type)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    notifier: str
    outcome: str  # delivered | failed
    attempts: int
    error: str | None = None


def encode(message: dict[str, Any]) -> bytes:
    """The exact bytes a webhook receives (and that its signature covers)."""
    return orjson.dumps(message, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body>``, the value of the signature header."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier(ABC):
    name: str

    @abstractmethod
    def send(self, message: dict[str, Any]) -> None:
        """Deliver ``message`` once; raise NotifyFailed (or any exception) when it was not accepted."""


class LogNotifier(Notifier):
    name = "log"

    def send(self, message: dict[str, Any]) -> None:
        log.warning("alert", extra={"alert": message})


class WebhookNotifier(Notifier):
    name = "webhook"

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret

    def send(self, message: dict[str, Any]) -> None:
        body = encode(message)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)}
        response = httpx.post(self.url, content=body, headers=headers, timeout=SEND_TIMEOUT_SECONDS)
        if not 200 <= response.status_code < 300:
            raise NotifyFailed(f"HTTP {response.status_code}")


class EmailNotifier(Notifier):
    name = "email"

    def __init__(self, host: str, port: int, *, sender: str, recipients: list[str], starttls: bool = False,
                 user: str | None = None, password: str | None = None) -> None:
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self.starttls, self.user, self.password = starttls, user, password

    def send(self, message: dict[str, Any]) -> None:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        email["Subject"] = subject(message)
        email.set_content(orjson.dumps(message, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        with smtplib.SMTP(self.host, self.port, timeout=SEND_TIMEOUT_SECONDS) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(email)


def subject(message: dict[str, Any]) -> str:
    return (f"[VitalOps {message.get('severity', 'alert')}] {message.get('model')} v{message.get('version')} "
            f"at {message.get('site')}: {message.get('metric')} {message.get('comparison')} "
            f"{message.get('threshold')} ({message.get('event')})")


NOTIFIERS: dict[str, type[Notifier]] = {"log": LogNotifier, "webhook": WebhookNotifier, "email": EmailNotifier}


def notifiers_from_settings(settings: Settings) -> list[Notifier]:
    """The log, and the webhook and email when configured."""
    built: list[Notifier] = [LogNotifier()]
    if settings.alert_webhook_url and settings.alert_webhook_secret is not None:
        built.append(WebhookNotifier(settings.alert_webhook_url, settings.alert_webhook_secret.get_secret_value()))
    recipients = [address.strip() for address in settings.alert_email_to.split(",") if address.strip()]
    if settings.alert_smtp_host and recipients:
        built.append(EmailNotifier(
            settings.alert_smtp_host, settings.alert_smtp_port, sender=settings.alert_email_from,
            recipients=recipients, starttls=settings.alert_smtp_starttls, user=settings.alert_smtp_user,
            password=None if settings.alert_smtp_password is None else settings.alert_smtp_password.get_secret_value()))
    return built


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, NotifyFailed) else type(exc).__name__


def deliver(notifiers: list[Notifier], message: dict[str, Any], *, attempts: int = 3,
            backoff_seconds: float = 0.5) -> list[Delivery]:
    """Send ``message`` through each notifier, retrying with exponential backoff; never raises."""
    outcomes = []
    for notifier in notifiers:
        delay = backoff_seconds
        error: str | None = None
        for attempt in range(1, attempts + 1):
            try:
                notifier.send(message)
            except Exception as exc:  # noqa: BLE001 - a notifier that is down must not stop monitoring
                error = _reason(exc)
                log.warning("alert notification failed", extra={"notifier": notifier.name, "attempt": attempt,
                                                                "error": error})
                if attempt < attempts:
                    time.sleep(min(delay, MAX_BACKOFF_SECONDS))
                    delay *= 2
                continue
            outcomes.append(Delivery(notifier.name, "delivered", attempt))
            break
        else:
            outcomes.append(Delivery(notifier.name, "failed", attempts, error))
    return outcomes
