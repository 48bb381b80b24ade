"""Alert rules as data: one YAML document per model, filed as numbered, hashed versions.

::

    model: deterioration            # optional; when given it must be the model filed for
    rules:
      - id: canary-score-drift      # stable: alerts are keyed on it
        metric: prediction_drift.score_psi   # an exact id, or a family measured per feature
        window: 1d                  # the results' window length (6h, 1d, 7d)
        comparison: ">="            # >, >=, <, <=
        threshold: 0.2
        min_n: 100                  # below it: insufficient data, never an alert
        severity: critical          # info | warning | critical
        action: rollback            # none | rollback | review | retrain
        sites: [north]              # optional; default every site
        flagged_only: false         # optional; true: breach only where the engine flagged it too

Everything is checked when the rules are filed, and a bad rule is refused with InvalidInput naming
the rule and the field: an unknown field, metric, comparison, severity or action, a duplicate id,
a window that is not a whole number of hours or days. The newest filed version is in force.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vitalops.audit import append
from vitalops.auth import Permission, Principal, authorize
from vitalops.core.clock import utcnow
from vitalops.core.ids import sha256_hex
from vitalops.db import Database
from vitalops.db.tables.alerts import AlertRuleSetRow
from vitalops.errors import InvalidInput, NotFound
from vitalops.monitoring.metrics import METRICS, get_metric
from vitalops.registry.versions import model_row

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
SEVERITIES = ("info", "warning", "critical")
ACTIONS = ("none", "rollback", "review", "retrain")
#: Rules one model's document may hold; a larger document is refused, not truncated.
MAX_RULES = 200
#: The largest rules document accepted, in bytes.
MAX_DOCUMENT_BYTES = 256 * 1024
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
_WINDOW = re.compile(r"^([0-9]{1,3})([hd])$")
_SITE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def parse_window(text: str) -> timedelta:
    """``6h``, ``1d`` or ``7d`` as a length; ValueError otherwise (the engine's window grammar)."""
    match = _WINDOW.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError("a window is a number of hours or days, as 6h, 1d or 7d")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(hours=number) if unit == "h" else timedelta(days=number)


class AlertRule(BaseModel):
    """One rule. ``matches`` says whether a metric id is this rule's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    metric: str
    window: str = "1d"
    comparison: str
    threshold: float
    min_n: int = Field(ge=0, le=10_000_000)
    severity: Literal["info", "warning", "critical"] = "warning"
    action: str = "none"
    sites: tuple[str, ...] | None = None
    #: Breach only when the result is also flagged by the engine's own rule (for drift: an effect
    #: size with a significant test on the patients), not on the value alone.
    flagged_only: bool = False

    @property
    def window_length(self) -> timedelta:
        return parse_window(self.window)

    @property
    def is_family(self) -> bool:
        definition = METRICS.get(self.metric)
        return definition is not None and definition.per is not None

    def matches(self, metric_id: str) -> bool:
        return metric_id.startswith(f"{self.metric}/") if self.is_family else metric_id == self.metric

    def breached(self, value: float) -> bool:
        return COMPARISONS[self.comparison](value, self.threshold)

    def applies_to(self, site: str) -> bool:
        return self.sites is None or site in self.sites


class RuleDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    rules: list[dict[str, Any]] = Field(max_length=MAX_RULES)


class RuleSet(BaseModel):
    """A filed version of a model's rules."""

    model: str
    number: int
    spec_hash: str
    spec_yaml: str
    rules: list[AlertRule]
    created_at: datetime
    created_by: str


def _refuse(rule: str, field: str, message: str) -> InvalidInput:
    return InvalidInput(f"alert rule '{rule}': field '{field}': {message}", details={"rule": rule, "field": field})


def _parse_rule(position: int, raw: Any) -> AlertRule:
    if not isinstance(raw, dict):
        raise _refuse(f"#{position + 1}", "(rule)", "a rule is a mapping of fields")
    rule_id = raw.get("id")
    label = rule_id if isinstance(rule_id, str) and _RULE_ID.match(rule_id) else f"#{position + 1}"
    if label != rule_id:
        raise _refuse(label, "id", "an id of 1-64 lowercase letters, digits, '_', '.' or '-' is required")
    try:
        rule = AlertRule.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(rule)"
        raise _refuse(label, field, first["msg"]) from None
    if rule.comparison not in COMPARISONS:
        raise _refuse(label, "comparison", f"'{rule.comparison[:10]}' is not one of " + ", ".join(COMPARISONS))
    if rule.action not in ACTIONS:
        raise _refuse(label, "action", f"'{rule.action[:20]}' is not one of " + ", ".join(ACTIONS))
    if not math.isfinite(rule.threshold):
        raise _refuse(label, "threshold", "a finite number is required")
    try:
        parse_window(rule.window)
    except ValueError as exc:
        raise _refuse(label, "window", str(exc)) from None
    if not rule.is_family:
        try:
            get_metric(rule.metric)
        except InvalidInput as exc:
            raise _refuse(label, "metric", exc.message) from None
    if rule.sites is not None and (not rule.sites or not all(_SITE.match(site) for site in rule.sites)):
        raise _refuse(label, "sites", "a non-empty list of site codes, or leave it out for every site")
    return rule


def parse_rules(text: str, *, model: str) -> list[AlertRule]:
    """Validate a rules document for ``model``; InvalidInput naming the rule and field otherwise."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"the rules document is over {MAX_DOCUMENT_BYTES} bytes", details={"field": "rules"})
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InvalidInput(f"the alert rules of {model} are not valid YAML", details={"field": "rules"}) from None
    try:
        parsed = RuleDocument.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InvalidInput(f"the alert rules of {model}: field '{field}': {first['msg']}",
                           details={"field": field}) from None
    if parsed.model is not None and parsed.model != model:
        raise InvalidInput(f"the rules name model '{parsed.model[:64]}', not '{model}'", details={"field": "model"})
    rules = [_parse_rule(position, raw) for position, raw in enumerate(parsed.rules)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise _refuse(rule.id, "id", "appears twice; rule ids are unique within a model")
        seen.add(rule.id)
    return rules


def _to_rule_set(row: AlertRuleSetRow, model: str) -> RuleSet:
    return RuleSet(model=model, number=row.number, spec_hash=row.spec_hash, spec_yaml=row.spec_yaml,
                   rules=parse_rules(row.spec_yaml, model=model), created_at=row.created_at,
                   created_by=row.created_by)


def set_rules(database: Database, actor: Principal, model: str, text: str) -> RuleSet:
    """File a new version of ``model``'s rules (it takes force at once), audited as ``alert.rules_set``.

    Needs ``alerts:manage``. InvalidInput for a bad document, NotFound for an unknown model.
    """
    authorize(database, actor, Permission.ALERTS_MANAGE, object_type="model", object_id=model)
    rules = parse_rules(text, model=model)
    with database.session() as session:
        model_id = model_row(session, model).id
        number = int(session.scalar(select(func.coalesce(func.max(AlertRuleSetRow.number), 0))
                                    .where(AlertRuleSetRow.model_id == model_id)) or 0) + 1
        row = AlertRuleSetRow(model_id=model_id, number=number, spec_yaml=text, spec_hash=sha256_hex(text.encode()),
                              created_at=utcnow(), created_by=actor.name)
        session.add(row)
        session.flush()
        append(session, actor=actor, action="alert.rules_set", object_type="model", object_id=model,
               payload={"rule_set": number, "spec_hash": row.spec_hash, "rules": [rule.id for rule in rules]})
        return _to_rule_set(row, model)


def rules_in_force(session: Session, model: str) -> RuleSet | None:
    """The newest filed rule set of ``model`` (NotFound for an unknown model), or None when none is filed."""
    model_id = model_row(session, model).id
    row = session.scalars(select(AlertRuleSetRow).where(AlertRuleSetRow.model_id == model_id)
                          .order_by(AlertRuleSetRow.number.desc()).limit(1)).first()
    return None if row is None else _to_rule_set(row, model)


def get_rules(database: Database, actor: Principal, model: str) -> RuleSet:
    """The rules in force for ``model``; needs ``alerts:read``; NotFound when none are filed."""
    authorize(database, actor, Permission.ALERTS_READ, object_type="model", object_id=model)
    with database.read_session() as session:
        rule_set = rules_in_force(session, model)
    if rule_set is None:
        raise NotFound(f"no alert rules are filed for '{model}'", details={"field": "model"})
    return rule_set
