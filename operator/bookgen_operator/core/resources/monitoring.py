"""Prometheus Operator objects (monitoring.coreos.com/v1): a ServiceMonitor for the metrics Service and
a PrometheusRule with the BookGen alerts. Built here; the kopf layer decides whether to create them
(`monitoring_objects(spec, crds_present)` applies spec.metrics.*.enabled: auto | always | never).

The alerts are tuned by spec.metrics.alerts, already merged over the chart's `alerts` by
OperatorDefaults.apply: disabled rules are left out, thresholds fill the rule file's placeholders
(alert_templates.py), extra labels go on every rule and runbook links may point at the user's docs."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources

import yaml

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.alert_templates import fill_rule
from bookgen_operator.core.resources.labels import metadata, metrics_name, selector
from bookgen_operator.core.spec import QueueSpec, Toggle
from bookgen_operator.core.spec.alert_model import AlertSettings

COMPONENT = "metrics"
API_VERSION = "monitoring.coreos.com/v1"


def monitor_metadata(spec: QueueSpec) -> JSON:
    """Our labels plus spec.metrics.monitorLabels (e.g. `release: kps`, which kube-prometheus-stack's
    Prometheus selects by); ours win, since the operator finds its children by them."""
    meta = metadata(spec, spec.name, COMPONENT)
    meta["labels"] = {**spec.metrics.monitor_labels, **meta["labels"]}
    return meta


def build_service_monitor(spec: QueueSpec) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": monitor_metadata(spec),
        "spec": {
            "selector": {"matchLabels": selector(spec, COMPONENT)},
            "namespaceSelector": {"matchNames": [spec.namespace]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}],
        },
    }


#: A metric selector in PromQL: a BookGen metric name, then its label matchers if any.
_SELECTOR = re.compile(r"\b((?:bookgen|celery)_[a-z_]+)\b(\{[^}]*\})?")


def scope_expr(expr: str, matchers: str) -> str:
    """Add label matchers to every BookGen metric selector of a PromQL expression."""

    def scoped(match: re.Match[str]) -> str:
        name, labels = match.group(1), (match.group(2) or "{}")[1:-1].strip()
        return f"{name}{{{matchers}{',' + labels if labels else ''}}}"

    return _SELECTOR.sub(scoped, expr)


def canonical_alert_rules(thresholds: Mapping[str, str] | None = None) -> list[JSON]:
    """The queue alert rules of the product's PrometheusRule file, with `thresholds` (name -> PromQL
    text) filled in and the file's defaults for the others. Fresh copies: callers may change them."""
    return [fill_rule(rule, thresholds or {}) for rule in _parsed_alert_rules()]


@functools.cache
def _parsed_alert_rules() -> list[JSON]:
    # Parsed once per process: YAML-parsing the file in every reconcile was 17 % of the operator's CPU
    # with 250 queues (py-spy).
    text = resources.files("bookgen_worker.metrics").joinpath("assets/alerts.yaml").read_text()
    document = yaml.safe_load(text)
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def prometheus_scope(spec: QueueSpec) -> dict[str, str]:
    """The labels Prometheus gives this BookGenQueue's series when its ServiceMonitor scrapes them
    (the Prometheus Operator adds `namespace` and `service`): what tells two queues in one namespace
    apart, since both usually have the same queue names."""
    return {"namespace": spec.namespace, "service": metrics_name(spec)}


def tuned(rule: JSON, settings: AlertSettings) -> JSON:
    """A rule with the extra labels (the parser refuses the names rules and series set, so none is lost)
    and, with a runbook base URL, its runbook link at `<base>/<AlertName>`."""
    out = {**rule, "labels": {**settings.labels, **rule.get("labels", {})}}
    if settings.runbook_base_url:
        out["annotations"] = {**rule.get("annotations", {}),
                              "runbook_url": f"{settings.runbook_base_url}/{rule['alert']}"}
    return out


def alert_rules(spec: QueueSpec) -> list[JSON]:
    """The canonical alerts as spec.metrics.alerts tunes them, scoped to this BookGenQueue
    (prometheus_scope), so two queues in a cluster never fire each other's alerts."""
    settings = spec.metrics.alerts
    scope = ",".join(f'{k}="{v}"' for k, v in prometheus_scope(spec).items())
    disabled = set(settings.disabled or ())
    return [tuned({**rule, "expr": scope_expr(str(rule["expr"]), scope)}, settings)
            for rule in canonical_alert_rules(settings.thresholds) if rule["alert"] not in disabled]


def build_prometheus_rule(spec: QueueSpec) -> JSON:
    rules = alert_rules(spec)
    # Every alert disabled: no group at all (the object stays, so turning one back on is an update).
    groups = [{"name": f"bookgen.{spec.namespace}.{spec.name}", "rules": rules}] if rules else []
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": monitor_metadata(spec),
        "spec": {"groups": groups},
    }


def wanted(toggle: Toggle, crds_present: bool) -> bool:
    return toggle == "always" or (toggle == "auto" and crds_present)


def monitoring_objects(spec: QueueSpec, crds_present: bool) -> list[JSON]:
    """The monitoring objects to create. `always` with the CRDs absent still returns them: the kopf
    layer then reports the failed create in status instead of silently skipping what was asked for."""
    out = []
    if wanted(spec.metrics.service_monitor, crds_present):
        out.append(build_service_monitor(spec))
    if wanted(spec.metrics.prometheus_rule, crds_present):
        out.append(build_prometheus_rule(spec))
    return out
