"""Acceptance 4: the Grafana dashboard is well-formed and only queries metrics the endpoint exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bookgen_worker.metrics import collector

from tests.support.metrics_scrape import live_endpoint, sample_names, scrape
from tests.support.promql import balanced, metric_names, unknown_functions

ASSETS = Path(collector.__file__).parent / "assets"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((ASSETS / "dashboard.json").read_text())


@pytest.fixture
def exported(redis_url: str) -> Iterator[set[str]]:
    with live_endpoint(redis_url) as url:
        yield sample_names(scrape(url))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_schema_essentials(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "bookgen-queues"
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "service", "queue", "operator_job"} <= set(variables)
    # the queue variable chains off the service: two BookGenQueues in one namespace are never summed
    assert 'service=~"$service"' in variables["queue"]["query"]["query"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["type"] and panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))


def test_panels_cover_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    text = " ".join(expressions(dashboard))
    for needed in ("bookgen_queue_pending", "bookgen_queue_in_flight", "bookgen_queue_oldest_pending_age_seconds",
                   "bookgen_pool_workers_online", "bookgen_tasks_succeeded_total", "bookgen_tasks_failed_total",
                   "histogram_quantile", "bookgen_dead_letter_queue_size"):
        assert needed in text


def test_queries_are_sane_and_filter_by_namespace_and_service(dashboard: dict[str, Any]) -> None:
    for expr in expressions(dashboard):
        assert balanced(expr), expr
        assert not unknown_functions(expr), expr
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            if "bookgen_operator_reconcile" in expr or "bookgen_operator_writes" in expr:
                assert 'job=~"$operator_job"' in expr, expr  # the operator is one per cluster, not per queue
                continue
            for selector in re.findall(r"\b(?:bookgen|celery)_\w+\{[^}]*\}", expr):
                assert re.search(r'(?:^|[{ ,])(?:queue_)?namespace=~"\$namespace"', selector), selector
                assert re.search(r'(?:queue_)?service=~"\$service"', selector), selector


def test_panels_for_the_operator_and_replicas_per_pool(dashboard: dict[str, Any]) -> None:
    text = " ".join(expressions(dashboard))
    for needed in ("bookgen_operator_pool_desired_replicas", "bookgen_operator_pool_current_replicas",
                   "bookgen_operator_reconciles_total", "bookgen_operator_reconcile_errors_total",
                   "bookgen_tasks_dead_lettered_total"):
        assert needed in text


def test_every_queried_metric_is_exported_by_a_live_endpoint(dashboard: dict[str, Any], exported: set[str]) -> None:
    used = {name for expr in expressions(dashboard) for name in metric_names(expr)
            if not name.startswith("bookgen_operator_")}  # the operator's: tests/prometheus/test_live_prometheus.py
    assert used, "no metric found in the dashboard"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
