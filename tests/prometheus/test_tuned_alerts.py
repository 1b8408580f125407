"""Tunable alerts (issue 24), checked with promtool on the rules the operator builds for a BookGenQueue
(core/resources/monitoring.py, from spec.metrics.alerts): a threshold override changes when an alert
fires, a disabled rule is absent, and the extra labels (and runbook links) are on every alert.

The queue is `a` in namespace `books`, so its rules are scoped to service `a-metrics`: the service of
the firing series in alerts_test.yaml, whose cases the last test reuses with the labels added.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml
from bookgen_operator.core.resources.monitoring import build_prometheus_rule
from bookgen_operator.core.spec import QueueSpec, parse_queue
from bookgen_operator.core.spec.alert_model import QUEUE_ALERTS

from tests.support.alert_rules import operator_groups
from tests.support.prometheus import binary

HERE = Path(__file__).parent
SCOPE = {"namespace": "books", "service": "a-metrics"}
OLDEST = 'bookgen_queue_oldest_pending_age_seconds{namespace="books", service="a-metrics", queue="export"}'
DEAD = 'bookgen_tasks_dead_lettered_total{namespace="books", service="a-metrics", queue="export", task="t"}'
RUNBOOKS = "https://github.com/bookgen/bookgen-queue-operator/blob/main/docs/runbooks"


def queue(alerts: dict[str, Any] | None = None) -> QueueSpec:
    spec = {"metrics": {"alerts": alerts}} if alerts is not None else {}
    return parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                        "metadata": {"name": "a", "namespace": "books"}, "spec": spec})


def write_rules(directory: Path, name: str, spec: QueueSpec) -> list[dict[str, Any]]:
    """The queue's PrometheusRule as a rule file for promtool; returns its rules."""
    groups = build_prometheus_rule(spec)["spec"]["groups"]
    (directory / name).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return [rule for group in groups for rule in group["rules"]]


def promtool_test(directory: Path, rule_files: list[str], tests: list[dict[str, Any]]) -> str:
    """Runs `promtool test rules` on these cases; returns its output, asserting it passed."""
    (directory / "cases.yaml").write_text(yaml.safe_dump(
        {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    done = subprocess.run([binary("promtool"), "test", "rules", "cases.yaml"], cwd=directory,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def oldest_alert(age: str, limit: int) -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", **SCOPE, "queue": "export"},
            "exp_annotations": {
                "summary": "A task has waited too long in BookGen queue export",
                "description": f"The oldest pending task in export (books/a-metrics) is {age} old "
                               f"(more than {limit} s).",
                "runbook_url": f"{RUNBOOKS}/BookGenOldestTaskTooOld.md"}}


def test_a_threshold_override_changes_when_the_alert_fires(tmp_path: Path) -> None:
    write_rules(tmp_path, "default.yaml", queue())
    write_rules(tmp_path, "tuned.yaml", queue({"thresholds": {
        "oldestTaskSeconds": 600, "oldestTaskFor": "2m",  # earlier: over 10 minutes, for 2
        "deadLettersIncrease": 1,  # later: one dead letter is no longer enough
    }}))
    # The oldest task ages a minute a minute; one task is dead-lettered at 31m.
    series = [{"series": OLDEST, "values": "0+60x60"}, {"series": DEAD, "values": "0x30 1x30"}]

    def case(*checks: tuple[str, str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": alerts} for at, name, alerts in checks]}]

    promtool_test(tmp_path, ["default.yaml"], case(
        ("20m", "BookGenOldestTaskTooOld", []),  # 20 minutes old: under the default 30
        ("40m", "BookGenOldestTaskTooOld", [oldest_alert("40m 0s", 1800)]),
        ("35m", "BookGenDeadLettersGrowing", [{
            "exp_labels": {"severity": "warning", **SCOPE},
            "exp_annotations": {"summary": "Tasks are failing for good (new dead letters)",
                                "description": "1 tasks were dead-lettered in books/a-metrics over 30m; "
                                               "see `bookgen dlq list`.",
                                "runbook_url": f"{RUNBOOKS}/BookGenDeadLettersGrowing.md"}}]),
    ))
    promtool_test(tmp_path, ["tuned.yaml"], case(
        ("12m", "BookGenOldestTaskTooOld", []),  # over 600 s since 11m: not for 2 minutes yet
        ("20m", "BookGenOldestTaskTooOld", [oldest_alert("20m 0s", 600)]),
        ("35m", "BookGenDeadLettersGrowing", []),
    ))


def test_a_disabled_rule_is_absent(tmp_path: Path) -> None:
    disabled = ["BookGenNoWorkersForQueue", "BookGenMetricsAbsent"]
    rules = write_rules(tmp_path, "tuned.yaml", queue({"disabled": disabled}))
    write_rules(tmp_path, "default.yaml", queue())
    assert [r["alert"] for r in rules] == [a for a in QUEUE_ALERTS if a not in disabled]
    check = subprocess.run([binary("promtool"), "check", "rules", "tuned.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stdout + check.stderr
    # Work waits and no worker is online, and the queue's measurements are missing: without the rules, silence.
    series = [{"series": 'bookgen_queue_pending{namespace="books", service="a-metrics", queue="export"}',
               "values": "50x30"},
              {"series": 'bookgen_queue_workers_online{namespace="books", service="a-metrics", queue="export"}',
               "values": "0x30"}]
    quiet = [{"interval": "1m", "input_series": series,
              "alert_rule_test": [{"eval_time": "15m", "alertname": name, "exp_alerts": []} for name in disabled]}]
    promtool_test(tmp_path, ["tuned.yaml"], quiet)
    # The same input fires both where they are not disabled: their absence is what silences them.
    (tmp_path / "cases.yaml").write_text((tmp_path / "cases.yaml").read_text().replace("tuned.yaml", "default.yaml"))
    failed = subprocess.run([binary("promtool"), "test", "rules", "cases.yaml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and all(name in output for name in disabled), output


def test_every_alert_disabled_leaves_a_valid_rule_without_groups(tmp_path: Path) -> None:
    assert write_rules(tmp_path, "none.yaml", queue({"disabled": list(QUEUE_ALERTS)})) == []
    check = subprocess.run([binary("promtool"), "check", "rules", "none.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_extra_labels_and_the_runbook_links_are_on_every_alert(tmp_path: Path) -> None:
    extra = {"team": "books", "pager": "daytime"}
    base = "https://wiki.example.com/runbooks"
    write_rules(tmp_path, "queue-rules.yaml", queue({"labels": extra, "runbookBaseUrl": base + "/"}))
    (tmp_path / "operator-rules.yaml").write_text(yaml.safe_dump({"groups": operator_groups()}))
    # alerts_test.yaml's cases, every expected queue alert with the labels and the link added. Its
    # absent() case is unscoped there; scoped to the queue, absent() gives the alert the scope's labels.
    tests = copy.deepcopy(yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"])
    tuned = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            if check["alertname"] not in QUEUE_ALERTS:
                continue
            for alert in check.get("exp_alerts") or []:
                alert["exp_labels"] = {**alert["exp_labels"], **extra, **SCOPE}
                alert["exp_annotations"]["runbook_url"] = f"{base}/{check['alertname']}"
                tuned.add(check["alertname"])
    assert tuned == set(QUEUE_ALERTS)  # a firing case for every one
    promtool_test(tmp_path, ["queue-rules.yaml", "operator-rules.yaml"], tests)
