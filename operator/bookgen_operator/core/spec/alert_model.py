"""The typed form of the alert tuning (`spec.metrics.alerts`, and the chart's `alerts` value that is every
queue's default): which alerts to leave out, their thresholds, extra labels and where runbook links point.
Parsed by spec/alerts.py, applied by resources/monitoring.py.

The thresholds are the `${<name>:<default>}` placeholders of the rule files
(worker/bookgen_worker/metrics/assets/alerts.yaml and operator-alerts.yaml); THRESHOLDS names each one
with its default, so the CRD, the chart's schema and docs/metrics.md can say them (tests hold the four
to agreement). Kept apart from model.py so that model.py can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

ThresholdKind = Literal["duration", "count", "seconds"]

#: The alerts of every BookGenQueue's PrometheusRule (assets/alerts.yaml), in the file's order.
QUEUE_ALERTS = ("BookGenBacklogGrowing", "BookGenOldestTaskTooOld", "BookGenDeadLettersGrowing",
                "BookGenNoWorkersForQueue", "BookGenMeasurementsStale", "BookGenRedisMemoryHigh",
                "BookGenMetricsAbsent")
#: The alerts of the chart's PrometheusRule (assets/operator-alerts.yaml): one operator per cluster.
OPERATOR_ALERTS = ("BookGenOperatorDown", "BookGenOperatorReconcileErrors")

#: Labels an alert gets from its series or its rule. Extra labels may not set them: `severity` is each
#: rule's own, and the others identify the queue or operator that fires (a rule label replaces the
#: series' own), so an extra label of one of these names would be lost or break every alert.
RESERVED_LABELS = ("alertname", "severity", "namespace", "service", "queue", "job", "reason")
RESERVED_MESSAGE = ("alerts.labels must not set alertname, severity, namespace, service, queue, job or reason: "
                    "the rules and their series set those")


@dataclass(frozen=True)
class Threshold:
    alert: str
    kind: ThresholdKind
    #: As the placeholder writes it (PromQL text: `15m`, `50`).
    default: str
    meaning: str


THRESHOLDS: Mapping[str, Threshold] = MappingProxyType({
    "backlogGrowingFor": Threshold(
        "BookGenBacklogGrowing", "duration", "15m",
        "pending is compared with this long ago, and must have grown for this long"),
    "backlogMinPending": Threshold(
        "BookGenBacklogGrowing", "count", "50", "fires only while more tasks than this are pending"),
    "oldestTaskSeconds": Threshold(
        "BookGenOldestTaskTooOld", "seconds", "1800",
        "fires when the oldest pending task has waited longer than this many seconds"),
    "oldestTaskFor": Threshold("BookGenOldestTaskTooOld", "duration", "5m", "how long it must stay too old"),
    "deadLettersWindow": Threshold(
        "BookGenDeadLettersGrowing", "duration", "30m", "the window new dead letters are counted over"),
    "deadLettersIncrease": Threshold(
        "BookGenDeadLettersGrowing", "count", "0",
        "fires when more tasks than this were dead-lettered in that window"),
    "deadLettersFor": Threshold(
        "BookGenDeadLettersGrowing", "duration", "1m", "how long the count must stay above it"),
    "noWorkersFor": Threshold(
        "BookGenNoWorkersForQueue", "duration", "5m", "how long a queue with work may have no worker online"),
    "measurementsStaleSeconds": Threshold(
        "BookGenMeasurementsStale", "seconds", "120",
        "fires when the last queue measurement is older than this many seconds"),
    "measurementsStaleFor": Threshold(
        "BookGenMeasurementsStale", "duration", "2m", "how long measurements must stay stale, or Redis down"),
    "redisMemoryPercent": Threshold(
        "BookGenRedisMemoryHigh", "count", "90",
        "fires when Redis uses more than this percentage of its maxmemory (at 100 it refuses submissions)"),
    "redisMemoryFor": Threshold(
        "BookGenRedisMemoryHigh", "duration", "5m", "how long it must stay above that percentage"),
    "metricsAbsentFor": Threshold(
        "BookGenMetricsAbsent", "duration", "10m", "how long the queue's metrics may be missing"),
    "operatorDownFor": Threshold(
        "BookGenOperatorDown", "duration", "5m", "how long the operator's metrics may be gone"),
    "reconcileErrorsFor": Threshold(
        "BookGenOperatorReconcileErrors", "duration", "15m",
        "the window failed reconciles are counted over, and how long they must go on"),
    "reconcileErrorsIncrease": Threshold(
        "BookGenOperatorReconcileErrors", "count", "0",
        "fires when more reconciles than this failed in that window"),
})
#: The thresholds a BookGenQueue can set (its own rules'); the chart can set every one.
QUEUE_THRESHOLDS = tuple(name for name, t in THRESHOLDS.items() if t.alert in QUEUE_ALERTS)


@dataclass(frozen=True)
class AlertSettings:
    """One level of alert tuning: a queue's spec.metrics.alerts or the chart's `alerts`. Unset fields
    (None, empty) take the level below: the chart's value, then the rule files as written."""

    #: Alert names left out; None = not set (an empty tuple keeps every alert, whatever the level below says).
    disabled: tuple[str, ...] | None = None
    #: Threshold name -> its PromQL text (`30m`, `3600`).
    thresholds: Mapping[str, str] = field(default_factory=dict)
    #: Added to every alert's labels (routing: team, pager...).
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Each runbook_url becomes `<this>/<AlertName>`; empty = the project's runbooks.
    runbook_base_url: str = ""

    def over(self, base: AlertSettings) -> AlertSettings:
        """These settings over `base`, field by field: a set list or URL replaces base's, a map's entries
        replace base's entries of the same name and keep the others."""
        return replace(
            self,
            disabled=base.disabled if self.disabled is None else self.disabled,
            thresholds={**base.thresholds, **self.thresholds},
            labels={**base.labels, **self.labels},
            runbook_base_url=self.runbook_base_url or base.runbook_base_url,
        )
