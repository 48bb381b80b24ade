"""Notifiers against real servers on loopback: a webhook receiver that checks the HMAC and fails the
first attempts, an SMTP server (aiosmtpd), and one that is down; no alert carries patient data."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import orjson
import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from tests.monitoring.alerting import MODEL, NOW, OPERATOR, RULES, build_model, result, seed
from vitalops.core.settings import Settings
from vitalops.errors import ConfigError
from vitalops.monitoring.alert_rules import set_rules
from vitalops.monitoring.alerts import evaluate_alerts, get_alert
from vitalops.monitoring.notifiers import (
    SIGNATURE_HEADER,
    EmailNotifier,
    LogNotifier,
    WebhookNotifier,
    deliver,
    notifiers_from_settings,
)

SECRET = "webhook-test-secret"  # noqa: S105


class Receiver:
    """A webhook receiver on loopback that answers 503 to the first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[bytes, bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""), expected)
                receiver.requests.append((body, signed))
                status = 503 if len(receiver.requests) <= receiver.failures else (204 if signed else 401)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/alerts"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MESSAGE = {"event": "alert.opened", "alert_id": 1, "model": MODEL, "version": 2, "site": "north",
           "metric": "prediction_drift.score_psi", "value": 0.4, "threshold": 0.2, "comparison": ">=",
           "window": "1d", "severity": "critical"}


def test_the_webhook_is_signed_and_retried_until_it_is_accepted():
    with Receiver(failures=2) as receiver:
        [delivery] = deliver([WebhookNotifier(receiver.url, SECRET)], MESSAGE, attempts=3, backoff_seconds=0.01)
    assert (delivery.outcome, delivery.attempts) == ("delivered", 3)
    assert [signed for _, signed in receiver.requests] == [True, True, True]
    assert orjson.loads(receiver.requests[-1][0]) == MESSAGE


def test_a_notifier_that_stays_down_is_recorded_failed_and_the_others_go_on(smtp):
    controller, mailbox = smtp
    down = WebhookNotifier(f"http://127.0.0.1:{_free_port()}/nobody", SECRET)
    email = EmailNotifier("127.0.0.1", controller.port, sender="vitalops@hospital.test",
                          recipients=["oncall@hospital.test"])
    with Receiver(failures=5) as receiver:
        outcomes = deliver([down, WebhookNotifier(receiver.url, SECRET), email, LogNotifier()], MESSAGE,
                           attempts=3, backoff_seconds=0.01)
    assert [(d.notifier, d.outcome, d.attempts, d.error) for d in outcomes] == [
        ("webhook", "failed", 3, "ConnectError"), ("webhook", "failed", 3, "HTTP 503"),
        ("email", "delivered", 1, None), ("log", "delivered", 1, None)]
    [(sender, recipients, content)] = mailbox.messages
    assert sender == "vitalops@hospital.test" and recipients == ["oncall@hospital.test"]
    assert b"prediction_drift.score_psi" in content and b"Subject: [VitalOps critical] sepsis v2 at north" in content


def test_an_evaluation_notifies_through_the_configured_servers_without_patient_data(database, settings, smtp):
    controller, mailbox = smtp
    build_model(database)
    set_rules(database, OPERATOR, MODEL, RULES)
    seed(database, result("prediction_drift.score_psi", 2, "north", 2, 0.45))
    with Receiver(failures=1) as receiver:
        configured = settings.model_copy(update={
            "alert_webhook_url": receiver.url, "alert_webhook_secret": SecretStr(SECRET),
            "alert_smtp_host": "127.0.0.1", "alert_smtp_port": controller.port, "alert_email_to": "a@h.test, b@h.test",
            "alert_notify_backoff_seconds": 0.01})
        assert [n.name for n in notifiers_from_settings(configured)] == ["log", "webhook", "email"]
        summary = evaluate_alerts(database, OPERATOR, MODEL, now=NOW, settings=configured)
    [alert_id] = summary["opened"]
    outcomes = {(d["notifier"], d["outcome"], d["attempts"]) for d in get_alert(database, OPERATOR, alert_id)[
        "deliveries"]}
    assert outcomes == {("log", "delivered", 1), ("webhook", "delivered", 2), ("email", "delivered", 1)}
    body = orjson.loads(receiver.requests[-1][0])
    assert (body["alert_id"], body["action_outcome"], body["version"]) == (alert_id, "rolled_back", 2)
    assert not {"patient_key", "patient", "mrn"} & set(body)
    assert len(mailbox.messages) == 1 and mailbox.messages[0][1] == ["a@h.test", "b@h.test"]


def test_a_webhook_without_a_secret_is_refused_when_settings_load():
    with pytest.raises(ConfigError, match="VITALOPS_ALERT_WEBHOOK_SECRET"):
        Settings(alert_webhook_url="http://127.0.0.1:9/hook")
