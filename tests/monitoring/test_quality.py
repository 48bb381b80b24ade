"""Data quality per site and window from the lake's facts: a site that starts sending creatinine in
umol/L under the mg/dL unit shows in its out-of-range rate within the day; freshness per site."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from tests.monitoring.conftest import DAY0, MODEL, OPERATOR
from vitalops.artifacts import open_store
from vitalops.ingest.normalize import resources_to_facts
from vitalops.lake.facts import FactsStore
from vitalops.monitoring.engine import run_monitoring
from vitalops.monitoring.results import read_results


def _creatinine(index: int, site: str, value: float, hours: float) -> dict:
    return {
        "resourceType": "Observation", "id": f"{site}-cr-{index}", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": f"Patient/{site}-{index % 40}"},
        "effectiveDateTime": (DAY0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


def test_a_unit_mislabel_shows_in_the_out_of_range_rate_at_that_site_within_the_day(monitored, tmp_path):
    for site in ("north", "south"):
        monitored.score_day(tmp_path, site, 0, 120)
    rng = np.random.default_rng(5)
    store = FactsStore(monitored.lake_root)
    for site, mislabelled in (("north", 0.0), ("south", 0.4)):
        values = np.round(rng.lognormal(0.0, 0.3, 80), 2)
        sent = np.where(rng.random(80) < mislabelled, np.round(values * 88.42), values)  # umol/L as mg/dL
        resources = [_creatinine(i, site, float(v), 1 + i * 0.25) for i, v in enumerate(sent)]
        result = resources_to_facts(resources, site=site, pseudonymizer=monitored.context.pseudonymizer,
                                    terminology=monitored.context.terminology,
                                    known_at_default=DAY0 + timedelta(hours=23), batch_id=f"test-{site}")
        store.append(result.facts)
    run_monitoring(monitored.database, OPERATOR, lake_root=monitored.lake_root,
                   store=open_store(monitored.settings.artifacts_root), model=MODEL,
                   now=DAY0 + timedelta(days=1, hours=2))
    with monitored.database.session() as session:
        rates = {r.site: r for r in read_results(session, model=MODEL,
                                                 metric_id="quality.out_of_range_rate/creatinine")}
        fresh = {r.site: r for r in read_results(session, model=MODEL, metric_id="quality.freshness_hours")}
    assert rates["north"].status == "ok" and rates["north"].value == 0.0 and rates["north"].n == 80
    assert rates["south"].status == "flagged" and 0.25 < rates["south"].value < 0.55
    assert rates["south"].version == 0 and rates["south"].details["threshold"] == 0.02
    assert fresh["north"].value == 1.0 and fresh["north"].status == "ok"  # known at 23:00, the window ends 24:00
