"""celery-exporter's celery-mixin (dashboards and alerts, vendored in tests/data/celery_mixin), evaluated
against a Prometheus: what our metrics README claims, that its expressions return data from us."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support import grafana_eval
from tests.support.grafana_eval import Result, Window
from tests.support.prometheus import PrometheusAPI

MIXIN = Path(__file__).parents[1] / "data" / "celery_mixin"
#: celery-mixin expressions that cannot return data against any single-cluster Prometheus, with why.
EXPLAINED = {
    "$cluster": "label_values(celery_worker_up{}, cluster): no series has a `cluster` label unless the "
                "Prometheus setup adds one (multi-cluster); the variable is hidden and cluster=\"\" then "
                "matches every series, so the panels still work",
}


def evaluate(api: PrometheusAPI, window: Window) -> list[Result]:
    """Every variable, panel and alert expression of the mixin over `window`."""
    doc = json.loads((MIXIN / "dashboards.json").read_text())
    results: list[Result] = []
    for board in doc["dashboards"]:
        fake = {"templating": {"list": [{"type": "query", "name": v["name"], "query": v["query"]}
                                        for v in board["variables"]]},
                "panels": [{"title": t["panel"], "targets": [{"expr": t["expr"], "instant": t["instant"]}]}
                           for t in board["targets"]]}
        results += grafana_eval.evaluate_dashboard(api, board["uid"], fake, window)
    rules = yaml.safe_load((MIXIN / "prometheus_alerts.yaml").read_text())["groups"][0]["rules"]
    results += grafana_eval.evaluate_alerts(api, rules, window, source="celery-mixin alerts")
    return results
