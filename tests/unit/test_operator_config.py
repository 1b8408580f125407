"""The operator's settings: read once, with the rules they always had, and every one documented."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from bookgen_operator.controller import config
from bookgen_operator.controller.config import OperatorConfig, load_config, settings_table

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
TABLE = re.compile(r"<!-- operator-settings:start[^\n]*-->\n(.*?)<!-- operator-settings:end -->", re.S)


def test_defaults_without_flags_or_variables() -> None:
    assert load_config([], {}) == OperatorConfig()
    cfg = OperatorConfig()
    assert (cfg.reconcile_interval, cfg.metrics_port, cfg.liveness) == (30.0, 9090, "http://0.0.0.0:8080/healthz")
    assert cfg.autoscaler and not cfg.leader_elect and cfg.namespaces == ()


def test_flags_win_over_the_environment_and_the_environment_over_the_defaults() -> None:
    env = {"BOOKGEN_OPERATOR_METRICS_PORT": "9100", "POD_NAMESPACE": "ops", "BOOKGEN_RECONCILE_INTERVAL": "2",
           "BOOKGEN_LEADER_ELECT": "yes", "POD_NAME": "op-0"}
    cfg = load_config(["--metrics-port", "0", "-n", "a", "-n", "b"], env)
    assert (cfg.metrics_port, cfg.namespaces, cfg.reconcile_interval) == (0, ("a", "b"), 2.0)
    assert cfg.leader_elect and cfg.lease_namespace == "ops" and cfg.operator_namespace == "ops"
    assert cfg.identity == "op-0" and "(op-0/" in cfg.user_agent


def test_the_historical_parsing_rules() -> None:
    assert not load_config([], {"BOOKGEN_AUTOSCALER": "Off"}).autoscaler
    assert load_config([], {"BOOKGEN_AUTOSCALER": "maybe"}).autoscaler  # only off/0/false/no turn it off
    assert not load_config([], {"BOOKGEN_LEADER_ELECT": "enabled"}).leader_elect  # only 1/true/yes/on
    assert load_config([], {"BOOKGEN_SECRET_RETRY_SECONDS": "5"}).secret_retry_seconds == 30.0  # at least 30
    assert load_config([], {"BOOKGEN_LEASE_DURATION": "15"}).lease_timings.duration == 15.0


def test_a_malformed_chart_default_is_kept_to_be_reported_on_every_queue() -> None:
    cfg = load_config([], {"BOOKGEN_MONITOR_LABELS": "release"})
    assert cfg.defaults_problem is not None and "BOOKGEN_MONITOR_LABELS" in cfg.defaults_problem
    good = load_config([], {"BOOKGEN_MONITOR_LABELS": "release=kps", "BOOKGEN_IMAGE_REGISTRY": "mirror:5000/"})
    assert good.queue_defaults().monitor_labels == {"release": "kps"}
    assert good.queue_defaults().image_registry == "mirror:5000"


def test_every_variable_read_is_in_the_settings_table() -> None:
    source = inspect.getsource(config)
    read = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and re.fullmatch(r"(BOOKGEN|POD)_[A-Z_]+|KUBECONFIG", node.value)}
    table = settings_table()
    assert read and all(f"`{name}`" in table for name in read), sorted(n for n in read if f"`{n}`" not in table)


def test_the_documented_table_is_current() -> None:
    match = TABLE.search(DOC.read_text())
    assert match, f"{DOC} has no generated operator settings table"
    assert match.group(1) == settings_table(), "regenerate it: python -m bookgen_operator.controller.config"
