"""Acceptance 5: the alert rules are a valid PrometheusRule and only read exported metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.core.resources.alert_templates import fill
from bookgen_worker.metrics import collector

from tests.support.metrics_scrape import live_endpoint, sample_names, scrape
from tests.support.promql import balanced, metric_names, unknown_functions

RULES = Path(collector.__file__).parent / "assets" / "alerts.yaml"
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
REQUIRED_ALERTS = {"BookGenBacklogGrowing", "BookGenOldestTaskTooOld", "BookGenDeadLettersGrowing",
                   "BookGenNoWorkersForQueue", "BookGenMeasurementsStale"}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    # With the thresholds' defaults filled in, as the operator deploys it (tests/support/alert_rules.py).
    documents = list(yaml.safe_load_all(fill(RULES.read_text(), {})))
    assert len(documents) == 1
    return documents[0]  # type: ignore[no-any-return]


@pytest.fixture
def exported(redis_url: str) -> Iterator[set[str]]:
    with live_endpoint(redis_url) as url:
        yield sample_names(scrape(url))


def rules(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in manifest["spec"]["groups"] for rule in group["rules"]]


def test_is_a_prometheus_rule_manifest(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    groups = manifest["spec"]["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}


def test_every_rule_is_complete(manifest: dict[str, Any]) -> None:
    names = [rule["alert"] for rule in rules(manifest)]
    assert set(names) >= REQUIRED_ALERTS and len(names) == len(set(names))
    for rule in rules(manifest):
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        for text in rule["annotations"].values():
            assert text.count("{{") == text.count("}}")


def test_expressions_are_sane(manifest: dict[str, Any]) -> None:
    for rule in rules(manifest):
        expr = rule["expr"]
        assert balanced(expr), rule["alert"]
        assert not unknown_functions(expr), rule["alert"]
        assert not re.search(r"\[\s*\]|\(\s*\)", expr.replace("time()", "")), rule["alert"]


def test_every_metric_in_the_rules_is_exported_by_a_live_endpoint(
    manifest: dict[str, Any], exported: set[str]
) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in rules(manifest)))
    assert "bookgen_queue_pending" in used
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_the_checker_catches_what_it_should() -> None:
    assert not balanced("sum(rate(x[5m])")
    assert metric_names('sum by (queue) (rate(a_total{q=~"$queue"}[5m])) / on (queue) b') == {"a_total", "b"}
    assert unknown_functions("sumx(a)") == {"sumx"}
    assert metric_names('label_values(m{n=~"$n"}, queue)') == {"m"}
