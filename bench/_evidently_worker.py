"""Runs inside the Evidently environment (bench/_evidently.py), never in the project's: JSON request
on standard input, one JSON line out.

Modes:
* ``report``: Evidently's ``DataDriftPreset`` over ``reference`` and ``current`` Parquet files with
  the given numerical and categorical columns; answers each column's method, value, threshold and
  whether it drifted, and the seconds ``Report.run`` took (the Parquet read is not counted).
* ``stattests``: Evidently's own stattest functions on the values sent, per case:
  ``{"test": name, "reference": [...], "current": [...], "feature_type": "num"|"cat"}``; answers
  the value each returned, and for ``auto`` the name of the test Evidently's default picks.
"""

import json
import sys
import time

import numpy as np
import pandas as pd


def _report(request):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical, categorical = request["numerical"], request["categorical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    reference = pd.read_parquet(request["reference"])
    current = pd.read_parquet(request["current"])
    started = time.perf_counter()
    evaluation = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                                 Dataset.from_pandas(reference, data_definition=definition))
    seconds = time.perf_counter() - started
    columns = {}
    for metric in evaluation.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        method, threshold, value = config["method"], float(config["threshold"]), float(metric["value"])
        # a p-value drifts below its threshold (K-S at or below), a distance at or above it
        drift = (value <= threshold if method.startswith("K-S") else value < threshold) if "p_value" in method \
            else value >= threshold
        columns[config["column"]] = {"method": method, "value": value, "threshold": threshold, "drift": bool(drift)}
    return {"seconds": seconds, "columns": columns, "rows": [len(reference), len(current)]}


def _stattests(request):
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.calculations.stattests.registry import _get_default_stattest
    from evidently.legacy.core import ColumnType

    types = {"num": ColumnType.Numerical, "cat": ColumnType.Categorical}
    answers = []
    for case in request["cases"]:
        reference = pd.Series(np.asarray(case["reference"], dtype=np.float64)).dropna()
        current = pd.Series(np.asarray(case["current"], dtype=np.float64)).dropna()
        feature_type = types[case["feature_type"]]
        if case["test"] == "auto":
            test = _get_default_stattest(reference, current, feature_type)
        else:
            test = get_stattest(reference, current, feature_type, case["test"])
        result = test(reference, current, feature_type, None)
        answers.append({"test": test.name, "value": float(result.drift_score), "drift": bool(result.drifted)})
    return {"answers": answers}


def main():
    request = json.loads(sys.stdin.read())
    answer = {"report": _report, "stattests": _stattests}[request["mode"]](request)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
