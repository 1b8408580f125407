"""The product's alert rule files as Prometheus gets them: the `${name:default}` threshold placeholders
filled in (core/resources/alert_templates.py), with the defaults unless `thresholds` says otherwise.

    queue_groups(thresholds) / operator_groups(thresholds) -> the rule groups of alerts.yaml / operator-alerts.yaml
    raw_text(name)                                          -> a file as written, placeholders and all
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from bookgen_operator.core.resources.alert_templates import fill

ASSETS = Path(__file__).resolve().parents[2] / "worker" / "bookgen_worker" / "metrics" / "assets"
NO_OVERRIDES: Mapping[str, str] = {}


def raw_text(name: str) -> str:
    return (ASSETS / name).read_text()


def rule_document(name: str, thresholds: Mapping[str, str] = NO_OVERRIDES) -> dict[str, Any]:
    document = yaml.safe_load(fill(raw_text(name), thresholds))
    assert isinstance(document, dict)
    return document


def queue_groups(thresholds: Mapping[str, str] = NO_OVERRIDES) -> list[dict[str, Any]]:
    """alerts.yaml is a PrometheusRule: its groups are under spec."""
    return list(rule_document("alerts.yaml", thresholds)["spec"]["groups"])


def operator_groups(thresholds: Mapping[str, str] = NO_OVERRIDES) -> list[dict[str, Any]]:
    """operator-alerts.yaml is a plain Prometheus rule file."""
    return list(rule_document("operator-alerts.yaml", thresholds)["groups"])
