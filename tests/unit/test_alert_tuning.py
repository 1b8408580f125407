"""Tunable alerts (issue 24): spec.metrics.alerts and the chart's BOOKGEN_ALERTS are parsed with
one-line messages, merged field by field (the queue's over the chart's), and applied by the pure
PrometheusRule builder; the threshold names agree across the rule files, the CRD, the chart's schema
and docs/metrics.md. promtool runs the built rules in tests/prometheus/test_tuned_alerts.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.core.resources.alert_templates import PLACEHOLDER, fill, placeholders
from bookgen_operator.core.resources.monitoring import alert_rules, build_prometheus_rule, canonical_alert_rules
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.spec.alert_model import (
    OPERATOR_ALERTS,
    QUEUE_ALERTS,
    QUEUE_THRESHOLDS,
    RESERVED_LABELS,
    THRESHOLDS,
    AlertSettings,
)
from bookgen_operator.core.spec.operator_defaults import OperatorDefaults

from tests.support.alert_rules import raw_text
from tests.support.crd_validation import openapi_schema

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bookgen-operator"


def queue(alerts: dict[str, Any] | None = None, env: dict[str, Any] | None = None) -> QueueSpec:
    spec = parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                        "metadata": {"name": "q", "namespace": "books"},
                        "spec": {"metrics": {"alerts": alerts}} if alerts is not None else {}})
    chart = {"BOOKGEN_ALERTS": json.dumps(env)} if env is not None else {}
    return OperatorDefaults.from_env(chart).apply(spec)


# -- parsing -----------------------------------------------------------------------------------------

def test_unset_means_the_rules_as_shipped() -> None:
    assert queue().metrics.alerts == AlertSettings()
    assert alert_rules(queue()) == alert_rules(queue({}))
    assert [r["alert"] for r in alert_rules(queue())] == list(QUEUE_ALERTS)


def test_every_field_is_read() -> None:
    settings = queue({"disabled": ["BookGenMetricsAbsent"], "labels": {"team": "books"},
                      "thresholds": {"oldestTaskSeconds": 3600, "backlogGrowingFor": "30m"},
                      "runbookBaseUrl": "https://wiki.example.com/rb/"}).metrics.alerts
    assert settings == AlertSettings(("BookGenMetricsAbsent",),
                                     {"backlogGrowingFor": "30m", "oldestTaskSeconds": "3600"},
                                     {"team": "books"}, "https://wiki.example.com/rb")


@pytest.mark.parametrize(("alerts", "message"), [
    ({"disabled": ["BookGenOperatorDown"]},
     "spec.metrics.alerts.disabled: unknown alert(s) BookGenOperatorDown; known: BookGenBacklogGrowing"),
    ({"disabled": "BookGenMetricsAbsent"}, "spec.metrics.alerts.disabled must be a list of alert names"),
    ({"thresholds": {"operatorDownFor": "5m"}}, "spec.metrics.alerts.thresholds: unknown field(s) operatorDownFor"),
    ({"thresholds": {"oldestTaskFor": "5 minutes"}},
     "spec.metrics.alerts.thresholds.oldestTaskFor must be a Prometheus duration such as 90s, 30m or 2h"),
    ({"thresholds": {"oldestTaskFor": "0m"}}, "thresholds.oldestTaskFor must be a Prometheus duration"),
    ({"thresholds": {"oldestTaskSeconds": 0}}, "spec.metrics.alerts.thresholds.oldestTaskSeconds must be at least 1"),
    ({"thresholds": {"backlogMinPending": 1.5}}, "thresholds.backlogMinPending must be a whole number"),
    ({"labels": {"severity": "page"}}, "alerts.labels must not set alertname, severity, namespace"),
    ({"labels": {"team-name": "x"}}, "spec.metrics.alerts.labels: 'team-name' is not a Prometheus label name"),
    ({"labels": {"__meta": "x"}}, "is not a Prometheus label name"),
    ({"labels": {"team": ""}}, "spec.metrics.alerts.labels.team must be a string of 1 to 256 characters"),
    ({"runbookBaseUrl": "wiki/runbooks"}, "spec.metrics.alerts.runbookBaseUrl must be an http:// or https:// URL"),
    ({"paging": True}, "spec.metrics.alerts: unknown field(s) paging"),
])
def test_mistakes_are_one_line_messages_naming_the_field(alerts: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        queue(alerts)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_chart_value_may_name_the_operators_alerts_and_a_bad_one_names_the_variable() -> None:
    chart = OperatorDefaults.from_env({"BOOKGEN_ALERTS": json.dumps(
        {"disabled": ["BookGenOperatorDown"], "thresholds": {"operatorDownFor": "10m"}, "labels": {},
         "runbookBaseUrl": ""})})
    assert chart.alerts == AlertSettings(("BookGenOperatorDown",), {"operatorDownFor": "10m"})
    assert OperatorDefaults.from_env({"BOOKGEN_ALERTS": ""}).alerts == AlertSettings()
    with pytest.raises(SpecError, match="BOOKGEN_ALERTS must be a JSON object"):
        OperatorDefaults.from_env({"BOOKGEN_ALERTS": "{team: books}"})
    with pytest.raises(SpecError, match=r"BOOKGEN_ALERTS\.thresholds\.noWorkersFor must be a Prometheus duration"):
        OperatorDefaults.from_env({"BOOKGEN_ALERTS": '{"thresholds": {"noWorkersFor": "5"}}'})


# -- merging: the queue's own over the chart's, field by field ------------------------------------------

CHART_VALUE = {"disabled": ["BookGenMetricsAbsent"], "labels": {"team": "platform", "pager": "day"},
               "thresholds": {"oldestTaskSeconds": 600, "noWorkersFor": "10m"},
               "runbookBaseUrl": "https://platform.example.com/runbooks"}


def test_the_chart_value_is_every_queues_default() -> None:
    assert queue(env=CHART_VALUE).metrics.alerts == AlertSettings(
        ("BookGenMetricsAbsent",), {"oldestTaskSeconds": "600", "noWorkersFor": "10m"},
        {"team": "platform", "pager": "day"}, "https://platform.example.com/runbooks")


def test_a_queue_overrides_the_chart_field_by_field() -> None:
    own = {"disabled": [], "labels": {"team": "books"}, "thresholds": {"oldestTaskSeconds": 3600},
           "runbookBaseUrl": "https://books.example.com/rb"}
    assert queue(own, env=CHART_VALUE).metrics.alerts == AlertSettings(
        (),  # a list replaces the chart's: [] turns BookGenMetricsAbsent back on
        {"oldestTaskSeconds": "3600", "noWorkersFor": "10m"},  # per threshold
        {"team": "books", "pager": "day"},  # per label
        "https://books.example.com/rb")
    only_labels = queue({"labels": {"team": "books"}}, env=CHART_VALUE).metrics.alerts
    assert only_labels.disabled == ("BookGenMetricsAbsent",) and only_labels.thresholds["oldestTaskSeconds"] == "600"


# -- building --------------------------------------------------------------------------------------------

def by_name(spec: QueueSpec) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in alert_rules(spec)}


def test_disabled_rules_are_left_out_and_all_disabled_leaves_no_group() -> None:
    assert list(by_name(queue({"disabled": ["BookGenNoWorkersForQueue"]}))) == [
        a for a in QUEUE_ALERTS if a != "BookGenNoWorkersForQueue"]
    assert build_prometheus_rule(queue({"disabled": list(QUEUE_ALERTS)}))["spec"] == {"groups": []}


def test_a_threshold_changes_every_place_its_rule_uses_it() -> None:
    rule = by_name(queue({"thresholds": {"backlogGrowingFor": "45m", "backlogMinPending": 500}}))[
        "BookGenBacklogGrowing"]
    assert "[45m]" in rule["expr"] and "> 500" in rule["expr"] and rule["for"] == "45m"
    assert "than 45m ago and still over 500 waiting" in rule["annotations"]["description"]
    default = by_name(queue())["BookGenBacklogGrowing"]
    assert "[15m]" in default["expr"] and "> 50)" in default["expr"] and default["for"] == "15m"


def test_no_placeholder_reaches_prometheus_whatever_is_set() -> None:
    every = {name: ("7m" if THRESHOLDS[name].kind == "duration" else 7) for name in QUEUE_THRESHOLDS}
    for spec in (queue(), queue({"thresholds": every})):
        assert "${" not in json.dumps(build_prometheus_rule(spec))


def test_extra_labels_go_on_every_rule_beside_its_severity_and_links_follow_the_base() -> None:
    rules = alert_rules(queue({"labels": {"team": "books"}, "runbookBaseUrl": "https://wiki.example.com/rb"}))
    for rule in rules:
        assert rule["labels"]["team"] == "books" and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/rb/{rule['alert']}"
    for rule in alert_rules(queue()):
        assert rule["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{rule['alert']}.md")


def test_tuning_one_queue_leaves_the_parsed_file_alone() -> None:
    """The file is parsed once per process (monitoring._parsed_alert_rules): a queue's tuning must not
    leak into the next queue's rules."""
    before = canonical_alert_rules()
    alert_rules(queue({"labels": {"team": "books"}, "thresholds": {"oldestTaskSeconds": 60},
                       "runbookBaseUrl": "https://wiki.example.com/rb"}))
    assert canonical_alert_rules() == before == canonical_alert_rules({})
    assert all("team" not in rule["labels"] for rule in before)


# -- one list of thresholds, everywhere ------------------------------------------------------------------

def test_the_rule_files_placeholders_are_the_thresholds_with_their_defaults() -> None:
    for file, alerts in (("alerts.yaml", QUEUE_ALERTS), ("operator-alerts.yaml", OPERATOR_ALERTS)):
        expected = {name: t.default for name, t in THRESHOLDS.items() if t.alert in alerts}
        assert placeholders(raw_text(file)) == expected, file
        rules = yaml.safe_load(fill(raw_text(file), {}))
        groups = rules["spec"]["groups"] if "spec" in rules else rules["groups"]
        assert [r["alert"] for g in groups for r in g["rules"]] == list(alerts), file
    with pytest.raises(ValueError, match="two defaults"):
        placeholders("${a:1m} ${a:2m}")


def test_the_crd_and_the_charts_schema_name_the_same_thresholds_alerts_and_reserved_labels() -> None:
    crd = openapi_schema()["properties"]["spec"]["properties"]["metrics"]["properties"]["alerts"]["properties"]
    chart = json.loads((CHART / "values.schema.json").read_text())["properties"]["alerts"]["properties"]
    assert list(crd["thresholds"]["properties"]) == list(QUEUE_THRESHOLDS)
    assert list(chart["thresholds"]["properties"]) == list(THRESHOLDS)
    for name, threshold in THRESHOLDS.items():
        kind = "string" if threshold.kind == "duration" else "integer"
        assert chart["thresholds"]["properties"][name]["type"] == kind
        if name in QUEUE_THRESHOLDS:
            assert crd["thresholds"]["properties"][name]["type"] == kind
            assert f"default {threshold.default})" in crd["thresholds"]["properties"][name]["description"]
    assert crd["disabled"]["items"]["enum"] == list(QUEUE_ALERTS)
    assert set(chart["disabled"]["items"]["enum"]) == {*QUEUE_ALERTS, *OPERATOR_ALERTS}
    (rule,) = crd["labels"]["x-kubernetes-validations"]
    assert all(f"'{label}'" in rule["rule"] for label in RESERVED_LABELS)
    assert chart["labels"]["propertyNames"]["not"]["anyOf"][0]["enum"] == list(RESERVED_LABELS)


def test_the_chart_fills_placeholders_with_the_same_pattern() -> None:
    template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert PLACEHOLDER.pattern == r"\$\{([A-Za-z][A-Za-z0-9]*):([^}]*)\}"
    assert '"\\\\$\\\\{[A-Za-z][A-Za-z0-9]*:([^}]*)\\\\}"' in template


def test_docs_list_every_threshold_with_its_alert_and_default() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name, threshold in THRESHOLDS.items():
        row = re.search(rf"^\| `{name}` \|.*$", doc, re.MULTILINE)
        assert row, name
        assert f"`{threshold.default}`" in row.group(0) and threshold.alert in row.group(0), row.group(0)


def test_the_operator_reads_the_chart_value_once_and_reports_a_bad_one_on_every_queue() -> None:
    from bookgen_operator.controller.config import load_config

    bad = load_config([], {"BOOKGEN_ALERTS": '{"labels": {"severity": "page"}}'})
    assert bad.defaults_problem is not None and "BOOKGEN_ALERTS" in bad.defaults_problem
    with pytest.raises(SpecError, match=r"alerts\.labels must not set"):
        bad.queue_defaults()
    good = load_config([], {"BOOKGEN_ALERTS": '{"labels": {"team": "platform"}}'})
    # As the reconciler builds a queue's children: the chart's defaults applied to the parsed spec.
    spec = good.queue_defaults().apply(parse_queue(
        {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "metadata": {"name": "q"}, "spec": {}}))
    assert all(rule["labels"]["team"] == "platform" for rule in alert_rules(spec))
