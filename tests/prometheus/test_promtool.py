"""The alert rules with Prometheus's own tool: `promtool check rules` on every rule file we ship, and
`promtool test rules` unit tests (alerts_test.yaml) with a firing and a not-firing case per alert."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_worker.metrics import collector

from tests.support.alert_rules import operator_groups, queue_groups
from tests.support.prometheus import binary

ASSETS = Path(collector.__file__).parent / "assets"
HERE = Path(__file__).parent
ROOT = HERE.parents[1]
RUNBOOKS = ROOT / "docs" / "runbooks"


def rule_groups() -> dict[str, list[dict[str, Any]]]:
    """Rule-file documents (plain `groups:`) of the queue rules and the operator rules, with the
    thresholds' defaults (tests/support/alert_rules.py; test_tuned_alerts.py tries other values)."""
    return {"queue-rules.yaml": queue_groups(), "operator-rules.yaml": operator_groups()}


def all_rules() -> list[dict[str, Any]]:
    return [rule for groups in rule_groups().values() for group in groups for rule in group["rules"]]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    for name, groups in rule_groups().items():
        (tmp_path / name).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_accepts_every_rule_file(rules_dir: Path) -> None:
    done = promtool("check", "rules", "queue-rules.yaml", "operator-rules.yaml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout and "SUCCESS: 2 rules found" in done.stdout


def test_promtool_test_rules_passes(rules_dir: Path) -> None:
    done = promtool("test", "rules", "alerts_test.yaml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules_fails_when_an_alert_is_broken(rules_dir: Path) -> None:
    # The unit tests can fail: loosen one threshold and they must notice.
    path = rules_dir / "queue-rules.yaml"
    path.write_text(path.read_text().replace("> 1800", "> 18000"))
    done = promtool("test", "rules", "alerts_test.yaml", cwd=rules_dir)
    assert done.returncode != 0 and "BookGenOldestTaskTooOld" in done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_not_firing_case() -> None:
    cases = yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for rule in all_rules():
        mine = [c for c in checks if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no firing case"
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']}: no not-firing case"


def test_every_alert_links_its_runbook_and_the_runbook_exists() -> None:
    for rule in all_rules():
        url = rule["annotations"]["runbook_url"]
        match = re.fullmatch(r"https://github\.com/bookgen/bookgen-queue-operator/blob/main/docs/runbooks/(\w+)\.md",
                             url)
        assert match and match.group(1) == rule["alert"], url
        text = (RUNBOOKS / f"{rule['alert']}.md").read_text()
        assert text.startswith(f"# {rule['alert']}") and "## Check" in text and "## Fix" in text


def test_no_rule_aggregates_the_service_label_away() -> None:
    for rule in all_rules():
        for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in clause.split(",")}
            if rule["alert"].startswith("BookGenOperator"):
                assert {"namespace", "job"} <= labels, rule["alert"]
            else:
                assert {"namespace", "service"} <= labels, rule["alert"]


def test_the_operators_per_queue_scoping_keeps_every_rule_valid(tmp_path: Path) -> None:
    from bookgen_operator.core.resources.monitoring import scope_expr

    (groups,) = [rule_groups()["queue-rules.yaml"]]
    scoped = [{**group, "rules": [{**r, "expr": scope_expr(r["expr"], 'namespace="books",service="q-metrics"')}
                                  for r in group["rules"]]} for group in groups]
    (tmp_path / "scoped.yaml").write_text(yaml.safe_dump({"groups": scoped}, sort_keys=False))
    done = promtool("check", "rules", "scoped.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'absent(bookgen_last_measurement_timestamp_seconds{namespace="books",service="q-metrics"})' in (
        tmp_path / "scoped.yaml").read_text()
