"""The chart's cluster-wide PrometheusRule, as Helm renders it, checked by promtool: valid rules, and
on a cluster with no BookGenQueue (no bookgen_* series at all) not one alert fires."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.prometheus import binary

from .conftest import VARIANTS, Render, by_kind


def test_chart_rules_pass_promtool_and_stay_silent_on_a_cluster_without_queues(render: Render, tmp_path: Path) -> None:
    (rule,) = by_kind(render([VARIANTS["monitoring"]]), "PrometheusRule")
    (tmp_path / "chart-rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert "BookGenOperatorDown" in alerts and "BookGenNoWorkersForQueue" not in alerts  # queue alerts: per queue
    cases = {
        "rule_files": ["chart-rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            # The cluster has Prometheus and other workloads, but no BookGenQueue and no operator yet.
            "input_series": [{"series": 'up{job="kubelet", namespace="kube-system"}', "values": "1x120"}],
            "alert_rule_test": [{"eval_time": "2h", "alertname": name, "exp_alerts": []} for name in alerts],
        }],
    }
    (tmp_path / "quiet_test.yaml").write_text(yaml.safe_dump(cases))
    check = subprocess.run([binary("promtool"), "check", "rules", "chart-rules.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([binary("promtool"), "test", "rules", "quiet_test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert test.returncode == 0, test.stdout + test.stderr
