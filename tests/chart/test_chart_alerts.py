"""The chart's `alerts` value (issue 24, tunable alerts): it tunes the chart's own PrometheusRule (the
operator's alerts), checked with promtool on what Helm renders, and reaches the operator as
BOOKGEN_ALERTS, the default of every BookGenQueue's alerts; values.schema.json refuses what the operator
would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.core.spec import SpecError
from bookgen_operator.core.spec.alert_model import AlertSettings
from bookgen_operator.core.spec.alerts import alerts_from_env

from tests.support.prometheus import binary

from .conftest import HelmError, Render, by_kind

TUNED = {"disabled": ["BookGenOperatorDown"], "labels": {"team": "platform"},
         "thresholds": {"reconcileErrorsIncrease": 20, "reconcileErrorsFor": "10m", "oldestTaskSeconds": 3600},
         "runbookBaseUrl": "https://wiki.example.com/runbooks/"}
ERRORS = 'bookgen_operator_reconcile_errors_total{namespace="ops", job="op", pod="p", reason="%s"}'


def operator_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = by_kind(objects, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_chart_tunes_its_operator_alerts_and_promtool_agrees(render: Render, tmp_path: Path) -> None:
    objects = render(sets=["prometheusRule.enabled=true"], set_json=[f"alerts={json.dumps(TUNED)}"])
    (rule,) = rules(objects)  # BookGenOperatorDown is disabled
    assert rule["alert"] == "BookGenOperatorReconcileErrors"
    assert rule["labels"] == {"severity": "warning", "team": "platform"}  # the rule's own severity stays
    assert rule["annotations"]["runbook_url"] == "https://wiki.example.com/runbooks/BookGenOperatorReconcileErrors"
    (tmp_path / "chart-rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "op", "rules": [rule]}]}))
    # 3 failures a minute fire the tuned rule (over 20 in 10 minutes); 1 a minute fired the default
    # (over 0 in 15 minutes), not this one.
    cases = {"rule_files": ["chart-rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": ERRORS % "Conflict", "values": "0+3x40"},
                         {"series": ERRORS % "Timeout", "values": "0+1x40"}],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "BookGenOperatorReconcileErrors", "exp_alerts": []},  # not for 10m yet
            {"eval_time": "25m", "alertname": "BookGenOperatorReconcileErrors", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "team": "platform", "namespace": "ops", "job": "op",
                               "reason": "Conflict"},
                "exp_annotations": {
                    "summary": "The BookGen operator keeps failing to reconcile (Conflict)",
                    "description": "30 reconciles of ops/op failed with Conflict over 10m, for 10m.",
                    "runbook_url": "https://wiki.example.com/runbooks/BookGenOperatorReconcileErrors"}}]},
        ],
    }]}
    (tmp_path / "tuned_test.yaml").write_text(yaml.safe_dump(cases, sort_keys=False))
    done = subprocess.run([binary("promtool"), "test", "rules", "tuned_test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_untuned_the_operator_gets_no_alert_settings(render: Render) -> None:
    assert "BOOKGEN_ALERTS" not in operator_env(render())


def test_the_alerts_value_reaches_the_operator_as_every_queues_default(render: Render) -> None:
    env = operator_env(render(set_json=[f"alerts={json.dumps(TUNED)}"]))
    assert alerts_from_env(env) == AlertSettings(
        disabled=("BookGenOperatorDown",), labels={"team": "platform"},
        thresholds={"oldestTaskSeconds": "3600", "reconcileErrorsFor": "10m", "reconcileErrorsIncrease": "20"},
        runbook_base_url="https://wiki.example.com/runbooks")


@pytest.mark.parametrize("value", [
    {"disabled": ["BookGenNoSuchAlert"]},
    {"thresholds": {"oldestTaskSecond": 60}},
    {"thresholds": {"oldestTaskFor": "5 minutes"}},
    {"thresholds": {"oldestTaskSeconds": 0}},
    {"labels": {"severity": "page"}},
    {"labels": {"team-name": "books"}},
    {"runbookBaseUrl": "wiki.example.com"},
], ids=lambda v: json.dumps(v))
def test_values_schema_refuses_what_the_operator_would(render: Render, value: dict[str, Any]) -> None:
    with pytest.raises(HelmError):
        render(set_json=[f"alerts={json.dumps(value)}"])
    with pytest.raises(SpecError, match="BOOKGEN_ALERTS"):
        alerts_from_env({"BOOKGEN_ALERTS": json.dumps(value)})
