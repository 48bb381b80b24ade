"""``vitalops demo``: build the synthetic hospital end to end on the embedded default, then serve it.

Steps: initialize the home; create the demo staff; generate a three-site synthetic hospital;
ingest it (quarantining what is bad); show the quality report; build the two demo training sets
point-in-time; train, validate, register, approve, gate and deploy the demo models (and show a
failing candidate blocked); serve a replayed day through REST and CDS Hooks, monitor it, score a
batch; verify the audit trail; replay the scenarios in a home of their own (``--no-scenarios``
skips it); serve. Each capability adds its step here.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.panel import Panel

from vitalops.cli.context import open_database
from vitalops.cli.output import JsonOption, console, print_json, progress_bar, rows_table
from vitalops.cli.serve_cmd import ensure_port_free, serve_forever
from vitalops.errors import NotFound

if TYPE_CHECKING:
    from vitalops.core.settings import Settings

if TYPE_CHECKING:
    from vitalops.auth import Principal
    from vitalops.db import Database

#: The demo hospital's staff: one user per role (two approvers, for the two-person rule).
DEMO_USERS = (
    ("ada", "admin"),
    ("dana", "data_scientist"),
    ("alex", "approver"),
    ("blake", "approver"),
    ("omar", "operator"),
    ("casey", "clinician"),
    ("audrey", "auditor"),
    ("ehr-north", "ehr"),
)
DEMO_SITES = ("north", "south", "east")
DEMO_PATIENTS = 1000
DEMO_SEED = 7
DEMO_MARKER = "demo.done"
#: The alert rules the demo files for deterioration.
DEMO_RULES = Path(__file__).resolve().parents[1] / "monitoring" / "demo_rules.yaml"


def ensure_demo_sites(database: Database) -> None:
    """Register the demo hospital's sites (kept if present); each feed tags its site by its code."""
    from vitalops.auth import SYSTEM
    from vitalops.sites import create_site, list_sites

    with database.session() as session:
        known = {site.code for site in list_sites(session)}
        for code in DEMO_SITES:
            if code not in known:
                create_site(session, SYSTEM, code, name=f"{code.title()} campus", tag_values=[code])


def ensure_demo_users(database: Database) -> tuple[dict[str, Principal], list[dict[str, Any]]]:
    """Create the demo staff (kept if present), revoke the keys an earlier run gave them, and give each a
    fresh key, returned once: people enroll and redeem their token for a key of their own (the demo acts
    for them with it, as they would), service accounts get one from the admin."""
    from vitalops.auth import SYSTEM
    from vitalops.auth.users import (
        authenticate_key,
        create_enrollment,
        create_key,
        create_user,
        get_user,
        list_keys,
        redeem_enrollment,
        revoke_key,
    )

    principals: dict[str, Principal] = {}
    keys: list[dict[str, Any]] = []
    with database.session() as session:
        for name, role in DEMO_USERS:
            try:
                user = get_user(session, name)
            except NotFound:
                user = create_user(session, SYSTEM, name, role)
            for old in list_keys(session, name):
                if old.name == "demo" and not old.revoked:
                    revoke_key(session, SYSTEM, old.prefix, "the demo was run again")
            if user.kind == "service":
                key, plain = create_key(session, SYSTEM, name, key_name="demo", days=30)
            else:
                _, token = create_enrollment(session, SYSTEM, name, hours=1)
                key, plain = redeem_enrollment(session, token, key_name="demo", days=30)
            keys.append({"user": name, "role": role, "key": plain, "expires_at": key.expires_at.date().isoformat()})
            principals[name] = authenticate_key(session, plain)
    return principals, keys


class DemoSteps:
    """The demo's steps over one home folder; each prints for people unless ``as_json``."""

    def __init__(self, settings: Settings, database: Database, staff: dict[str, Principal], as_json: bool) -> None:
        self.settings = settings
        self.database = database
        self.staff = staff
        self.as_json = as_json

    def heading(self, text: str) -> None:
        if not self.as_json:
            console.rule(f"[bold]{text}")

    def synthesize(self) -> tuple[Path, dict[str, Any]]:
        from vitalops.synth import generate_hospital
        self.heading(f"1. A synthetic {len(DEMO_SITES)}-site hospital ({DEMO_PATIENTS} patients, FHIR R4 bulk NDJSON)")
        out = self.settings.home / "hospital"
        with progress_bar(not self.as_json) as bar:
            task = bar.add_task("generating patients", total=DEMO_PATIENTS)
            summary = generate_hospital(out, patients=DEMO_PATIENTS, sites=list(DEMO_SITES), seed=DEMO_SEED,
                                        progress=lambda done: bar.update(task, completed=done), defects=True)
        result = summary.to_dict()
        if not self.as_json:
            rows = [{"resource type": kind, "resources": count} for kind, count in result["resources"].items()]
            console.print(rows_table(rows, ["resource type", "resources"], title=f"Written to {out}"))
            planted = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in result["defects"].items())
            console.print(f"Planted into {DEMO_SITES[-1]}'s feed, to be caught by ingest and quality: {planted}")
        return out, result

    def ingest(self, folder: Path) -> dict[str, Any]:
        from vitalops.cli.ingest_cmd import render_ingest_report
        from vitalops.ingest.service import ingest_paths
        from vitalops.synth import RESOURCE_TYPES
        self.heading("2. Ingest: parse, normalize codes and units, pseudonymize, quarantine what is bad")
        files = [folder / f"{kind}.ndjson" for kind in RESOURCE_TYPES if (folder / f"{kind}.ndjson").exists()]
        with progress_bar(not self.as_json) as bar:
            task = bar.add_task("ingesting resources", total=None)
            report = ingest_paths(self.database, self.staff["dana"], files, lake_root=self.settings.lake_root,
                                  progress=lambda done: bar.update(task, completed=done))
        result = report.to_dict()
        if not self.as_json:
            render_ingest_report(result)
        return result

    def quality(self, batch: str) -> dict[str, Any]:
        from vitalops.cli.quality_cmd import render_quality_report
        from vitalops.quality.report import quality_report
        self.heading("3. Data quality per site")
        result = quality_report(self.database, self.settings.lake_root, batch_id=batch,
                                principal=self.staff["dana"]).to_dict()
        if not self.as_json:
            render_quality_report(result)
        return result

    def datasets(self) -> dict[str, dict[str, Any]]:
        from vitalops.cli.dataset_cmd import render_dataset_summary
        from vitalops.features import demo_spec_path
        from vitalops.features.service import build_dataset
        from vitalops.training.demo import DEMO_MODELS
        self.heading("4. Point-in-time training sets from the feature, cohort and label definitions")
        built: dict[str, dict[str, Any]] = {}
        for name in DEMO_MODELS:
            out = str((self.settings.home / "datasets" / name).resolve())
            with progress_bar(not self.as_json) as bar:
                task = bar.add_task(f"building {name}", total=None)

                def advance(done: int, total: int, task: Any = task, bar: Any = bar) -> None:
                    bar.update(task, completed=done, total=total)

                built[name] = build_dataset(self.database, self.staff["dana"], demo_spec_path(name), out,
                                            lake_root=self.settings.lake_root, progress=advance)
            if not self.as_json:
                render_dataset_summary(built[name])
        return built

    def models(self, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from vitalops.registry.service import build_card, read_report
        from vitalops.training.demo import DEMO_MODELS, run_model_plane_demo
        from vitalops.validation.report import ValidationReport
        from vitalops.validation.report_html import render_report_html
        self.heading("5. Train, validate, register; plans and versions approved by two people; the PCCP gate; deploy")
        with progress_bar(not self.as_json) as bar:
            task = bar.add_task("model plane", total=None)
            result = run_model_plane_demo(
                self.database, self.settings.lake_root, data_scientist=self.staff["dana"],
                approvers=[self.staff["alex"], self.staff["blake"]],
                progress=lambda message: bar.update(task, description=message),
                datasets={name: summary["out"] for name, summary in datasets.items()},
            )
        cards = self.settings.home / "cards"
        cards.mkdir(exist_ok=True)
        result["cards"] = []
        for name in DEMO_MODELS:
            card = build_card(self.database, self.staff["alex"], name, 1)
            report = ValidationReport.model_validate(read_report(self.database, self.staff["alex"], name, 1))
            page = render_report_html(report, title=f"Validation report: {name} v1")
            for suffix, text in (("html", card.to_html()), ("md", card.to_markdown()), ("validation.html", page)):
                path = cards / f"{name}-v1.{suffix}"
                path.write_text(text, encoding="utf-8")
                result["cards"].append(str(path))
        if not self.as_json:
            render_model_plane(result)
            console.print(f"model cards (CHAI applied model card sections) and validation reports: {cards}/")
        return result

    def serving(self, datasets: dict[str, dict[str, Any]], clinician_key: str) -> tuple[dict[str, Any], Any]:
        from vitalops.api.app import create_app
        from vitalops.cdshooks.demo import run_cds_replay
        from vitalops.serving.demo import MODEL, run_serving_demo
        self.heading("6. Serving: a shadow and a 20% canary beside the champion; a replayed day through REST")
        app = create_app(self.settings, self.database)

        def replay_cds(base_url: str, served: list[dict[str, Any]]) -> dict[str, Any]:
            return run_cds_replay(self.database, base_url, self.settings.home, service=MODEL, served=served,
                                  patient_key=app.state.serving.pseudonymizer.patient_key,
                                  margin=self.settings.review_margin)

        with progress_bar(not self.as_json) as bar:
            task = bar.add_task("replaying a day of scoring times (REST, then CDS Hooks)", total=None)
            result = run_serving_demo(
                self.database, self.settings, data_scientist=self.staff["dana"],
                approvers=[self.staff["alex"], self.staff["blake"]], clinician_key=clinician_key,
                dataset_uri=datasets["deterioration"]["out"], app=app, then=replay_cds,
            )
            bar.update(task, completed=result["replayed"], total=result["replayed"])
        cds_hooks = result.pop("then")
        if not self.as_json:
            render_serving(result)
            self.heading("7. CDS Hooks: the north EHR's patients of that day, as cards in its workflow, with feedback")
            render_cds_hooks(cds_hooks)
        return result, cds_hooks

    def batch(self, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The census at the end of the data, scored in one batch run by the versions deployed at each site."""
        from vitalops.batch.demo import run_batch_demo
        from vitalops.serving.demo import MODEL
        from vitalops.serving.service import default_context
        runtime = default_context(self.settings).runtime
        result = run_batch_demo(self.database, self.staff["dana"], self.settings, runtime, model=MODEL,
                                dataset_uri=datasets["deterioration"]["out"])
        if not self.as_json:
            render_batch_run(result)
        return result

    def monitoring(self) -> dict[str, Any]:
        """Monitoring over the replayed day's predictions: every metric for that day, and what it flags."""
        from datetime import UTC, datetime, timedelta

        from sqlalchemy import select

        from vitalops.artifacts import open_store
        from vitalops.cli.monitor_cmd import render_run
        from vitalops.db.tables.registry import ModelRow
        from vitalops.db.tables.serving import PredictionRow
        from vitalops.monitoring.alert_rules import set_rules
        from vitalops.monitoring.alerts import evaluate_after_run, list_alerts
        from vitalops.monitoring.engine import run_monitoring
        from vitalops.serving.demo import MODEL
        with self.database.read_session() as session:  # the replayed day: the busiest day of the online log
            days = Counter(at.date() for at in session.scalars(
                select(PredictionRow.at).join(ModelRow, ModelRow.id == PredictionRow.model_id)
                .where(ModelRow.name == MODEL)))
        if not days:
            return {}
        busiest = min(days, key=lambda day: (-days[day], day))
        day = datetime(busiest.year, busiest.month, busiest.day, tzinfo=UTC)
        rules = set_rules(self.database, self.staff["omar"], MODEL, DEMO_RULES.read_text(encoding="utf-8"))
        result = run_monitoring(self.database, self.staff["omar"], lake_root=self.settings.lake_root,
                                store=open_store(self.settings.artifacts_root), model=MODEL, since=day,
                                until=day + timedelta(days=1))
        result["alerts"] = evaluate_after_run(self.database, self.staff["omar"], result, settings=self.settings)
        alerts = list_alerts(self.database, self.staff["omar"], model=MODEL)
        result["open_alerts"] = [alert.model_dump(mode="json") for alert in alerts]
        if not self.as_json:
            console.print(f"Monitoring of the replayed day against each version's training reference "
                          f"(try: vitalops monitor show --model {MODEL}):", highlight=False)
            render_run(result)
            render_demo_alerts(result["alerts"], alerts, rules.number)
        return result

    def scenarios(self) -> dict[str, Any]:
        """The scenario replay (``vitalops scenarios``) in a home of its own, run as its own process
        (its settings, database and lake are that home's): its summary, as that command prints it."""
        import os
        import subprocess
        import sys

        from vitalops.cli.scenarios_cmd import render_replay
        from vitalops.errors import VitalOpsError
        self.heading("9. Scenarios: a feed change, a mislabelled unit, a population shift and a protocol change, "
                     "one per site, replayed day by day")
        home = self.settings.home / "scenarios"
        if home.exists():
            shutil.rmtree(home)
        environment = {key: value for key, value in os.environ.items() if not key.startswith("VITALOPS_")}
        environment |= {"VITALOPS_HOME": str(home), "VITALOPS_LOG_LEVEL": "ERROR"}
        with progress_bar(not self.as_json) as bar:
            bar.add_task("replaying two weeks of a five-site hospital (a few minutes)", total=None)
            done = subprocess.run([sys.executable, "-c", "from vitalops.cli.main import run; run()", "scenarios",
                                   "--json"], env=environment, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise VitalOpsError(f"the scenario replay failed (exit {done.returncode}); run it alone with "
                                f"VITALOPS_HOME={home} vitalops scenarios")
        try:
            result: dict[str, Any] = orjson.loads(done.stdout)
        except orjson.JSONDecodeError:
            raise VitalOpsError(f"the scenario replay printed something other than its summary; run it alone with "
                                f"VITALOPS_HOME={home} vitalops scenarios") from None
        result["home"] = str(home)
        if not self.as_json:
            render_replay(result)
            console.print(f"Its installation is {home}: VITALOPS_HOME={home} vitalops alerts list", soft_wrap=True,
                          highlight=False)
        return result

    def audit(self) -> dict[str, Any]:
        from vitalops.audit import verify_chain
        self.heading("8. The audit trail")
        # As `vitalops audit verify` does: against the signed checkpoints outside the database, then one more.
        chain = verify_chain(self.database.engine, checkpoints=self.settings.audit_checkpoints_path,
                             record_checkpoint=True)
        if not self.as_json:
            console.print(f"{chain.events} events, keyed hash chain intact: {chain.ok}, checked against the signed "
                          f"checkpoints in {self.settings.audit_checkpoints_path.name} "
                          f"(head {chain.head_hash[:16]}...). Try: vitalops audit verify", soft_wrap=True,
                          highlight=False)
        return chain.to_dict()


def _gate_text(check: dict[str, Any]) -> str:
    if not check:
        return ""
    if check["status"] == "passed":
        return "pass"
    named = check["failed"] + [f"{n} (n/a)" for n in check["not_evaluable"]]
    waived = " [waived by full review]" if check.get("waived") else ""
    return f"{check['status'].upper()}: " + ", ".join(named) + waived


def render_model_plane(result: dict[str, Any]) -> None:
    rows = []
    for name, record in result["models"].items():
        checks = {check["version"]: check for check in record.get("checks", [])}
        if "blocked" in record:
            checks[record["blocked"]["version"]] = record["blocked"]
        for version in record["versions"]:
            number = version.get("version")
            rows.append({
                "model": name, "version": number, "state": version.get("state"),
                "auroc (95% CI)": version.get("auroc"), "gate": _gate_text(checks.get(number, {})),
            })
    for name, record in result["models"].items():
        plan = record["plan"]
        console.print(f"{name}: plan v{plan['version']} proposed by {plan['proposed_by']}, {plan['state']} "
                      f"after approval by {' and '.join(plan['approved_by'])}")
    console.print(rows_table(rows, ["model", "version", "state", "auroc (95% CI)", "gate"], title="Model versions"))
    for name, record in result["models"].items():
        if "not_approved" in record:
            console.print(f"[yellow]{name}: {record['not_approved']}[/]")
    deterioration = result["models"].get("deterioration", {})
    if "champion" in deterioration:
        console.print(f"champion at each site: {deterioration['champion']}")
    if "approval_reason" in deterioration:
        console.print(f"approval reason for deterioration v1: {deterioration['approval_reason']}", highlight=False)
    if "blocked" in deterioration:
        blocked = deterioration["blocked"]
        console.print(f"candidate v{blocked['version']} (retrained on an extract without vitals or labs) as a canary: "
                      f"{blocked['deploy_beyond_shadow']}", highlight=False)


def render_batch_run(batch: dict[str, Any]) -> None:
    modes = ", ".join(f"{count} {mode.replace('_unserved', ' (not returned)')}" for mode, count in
                      batch["by_mode"].items())
    console.print(f"A batch run (vitalops score): the census at {batch['at']}, {batch['rows']} patients at "
                  f"{len(batch['sites'])} sites, {batch['predictions']} predictions ({modes}), written to "
                  f"{batch['out']} and logged to the archive", soft_wrap=True, highlight=False)


def render_demo_alerts(evaluations: list[dict[str, Any]], alerts: list[Any], rule_set: int) -> None:
    judged = [j for evaluation in evaluations for j in evaluation["judged"]]
    short = Counter(j["rule"] for j in judged if j["state"] == "insufficient_data")
    console.print(f"Alert rules (rule set {rule_set}, filed by omar from {DEMO_RULES.name}): {len(judged)} results "
                  "judged; too few rows to judge: "
                  + (", ".join(f"{rule} at {count}" for rule, count in sorted(short.items())) or "none"),
                  highlight=False)
    rows = [{"alert": a.id, "rule": a.rule, "site": a.site, "version": a.version, "value": f"{a.value:.3g}",
             "threshold": f"{a.comparison} {a.threshold:g}", "severity": a.severity, "action": a.action,
             "outcome": a.action_outcome or ""} for a in alerts]
    console.print(rows_table(rows, ["alert", "rule", "site", "version", "value", "threshold", "severity", "action",
                                    "outcome"], title=f"{len(alerts)} open alerts (vitalops alerts list)")
                  if alerts else "no alert opened")


def render_serving(result: dict[str, Any]) -> None:
    console.print(f"v2 at south: {result['canary']['deployed']}; v3 at north: shadow (scored, logged, never returned)")
    console.print(rows_table(result["served"], ["site", "version", "mode", "predictions"],
                             title=f"{result['replayed']} predictions served, {result['flagged']} flagged"))
    for example in result["examples"]:
        factors = ", ".join(f"{f['feature']} {f['value']:.4g}{' ' + f['unit'] if f['unit'] else ''}"
                            if f["value"] is not None else f"{f['feature']} missing" for f in example["factors"])
        console.print(f"  {example['id']}  {example['site']} v{example['version']}: risk {example['risk']:.0%} "
                      f"({example['band']}); top factors: {factors}", highlight=False)
        for change in example["counterfactuals"]:
            console.print(f"      if {change['feature']} were {change['normal_value']:.4g} "
                          f"(now {change['value']:.4g}): risk {change['risk_if_normal']:.0%}", highlight=False)
    console.print("Any of them: GET /v1/predictions/<id> (or ?format=fhir for its RiskAssessment)")


def render_cds_hooks(result: dict[str, Any]) -> None:
    cards = ", ".join(f"{count} {indicator}" for indicator, count in result["cards"].items()) or "none"
    feedback = result["feedback"]
    console.print(f"{result['calls']} patient-view calls signed by {result['issuer']} ({result['site']}): cards {cards}"
                  f"; feedback {feedback['accepted']} accepted, {feedback['overridden']} overridden with a reason; "
                  f"review queue: {result['review_queue']} pending", highlight=False)
    console.print("Try: vitalops review list --json (as casey), or vitalops cds call deterioration --patient <id> "
                  "--fhir <home>/hospital --at <time> against a running server", highlight=False)


def build_demo(home: Path, *, as_json: bool, scenarios: bool = True) -> dict[str, Any]:
    """Run every demo step and return a summary."""
    from vitalops.cdshooks.demo import ensure_demo_ehr
    from vitalops.cli.init_cmd import initialize
    from vitalops.core.settings import get_settings

    summary: dict[str, Any] = {"home": initialize(home)}
    settings = get_settings()
    database = open_database(settings)
    ensure_demo_sites(database)
    staff, keys = ensure_demo_users(database)
    summary["users"] = keys
    summary["ehr_client"] = ensure_demo_ehr(database, staff["ada"], settings.home)
    if not as_json:
        console.print(Panel.fit("Demo staff and their API keys (shown once; use them as 'Authorization: Bearer ...')"))
        for entry in keys:  # one line each, never wrapped, so a key can be copied whole
            console.print(f"  {entry['user']:<10} {entry['role']:<15} {entry['key']}", soft_wrap=True,
                          highlight=False)
        console.print(f"The demo EHR ({summary['ehr_client']['issuer']}, site north) calls CDS Hooks with the key "
                      f"in {summary['ehr_client']['client_file']} (vitalops cds call)", soft_wrap=True,
                      highlight=False)
    marker = settings.home / DEMO_MARKER
    if marker.exists():
        if not as_json:
            console.print("The demo hospital is already built here; serving it (use --reset to rebuild).")
        summary["rebuilt"] = False
        return summary
    steps = DemoSteps(settings, database, staff, as_json)
    folder, summary["hospital"] = steps.synthesize()
    summary["ingest"] = steps.ingest(folder)
    summary["quality"] = steps.quality(summary["ingest"]["batch"])
    summary["datasets"] = steps.datasets()
    summary["models"] = steps.models(summary["datasets"])
    clinician_key = next(entry["key"] for entry in keys if entry["user"] == "casey")
    summary["serving"], summary["cds_hooks"] = steps.serving(summary["datasets"], clinician_key)
    summary["monitoring"] = steps.monitoring()
    summary["batch"] = steps.batch(summary["datasets"])
    summary["audit"] = steps.audit()
    if scenarios:
        summary["scenarios"] = steps.scenarios()
    summary["rebuilt"] = True
    marker.write_text("ok\n", encoding="utf-8")
    return summary


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the platform when built.")] = True,
        reset: Annotated[bool, typer.Option("--reset", help="Delete the home folder first and rebuild.")] = False,
        scenarios: Annotated[bool, typer.Option(
            "--scenarios/--no-scenarios", help="Also replay the scenarios in a home of their own (a few minutes).")]
        = True,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
        as_json: JsonOption = False,
    ) -> None:
        """Build the synthetic multi-site hospital end to end, then serve it."""
        from vitalops.core.settings import home_from_environment

        home = home_from_environment()
        if serve:
            ensure_port_free(host, port)  # say so now, not after building for minutes
        if reset and home.exists():
            shutil.rmtree(home)
        summary = build_demo(home, as_json=as_json, scenarios=scenarios)
        summary["url"] = f"http://{host}:{port}"
        if serve:
            ensure_port_free(host, port)  # again: before claiming readiness
        if as_json:
            print_json(summary)
        elif serve:
            console.print(Panel.fit(
                f"VitalOps is serving the demo hospital at [bold]{summary['url']}[/]\n"
                f"API docs: {summary['url']}/docs   health: {summary['url']}/readyz\n"
                "Try: curl -H 'Authorization: Bearer <audrey's key>' " + summary["url"] + "/v1/audit",
                title="demo ready",
            ))
        else:
            console.print(Panel.fit(
                f"The demo hospital is built in {home}. Serve it with: vitalops serve --port {port}\n"
                "Act as a person with their key: VITALOPS_API_KEY=<alex's key> vitalops pccp list deterioration",
                title="demo built",
            ))
        if serve:
            serve_forever(host, port)
