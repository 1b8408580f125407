"""Parse alert tuning: `spec.metrics.alerts` (a queue's own alerts) and BOOKGEN_ALERTS (the chart's
`alerts` value as JSON, every queue's default; it may also name the operator's alerts, which the chart
applies itself). The same checks as the CRD's schema and the chart's values.schema.json, with the field's
path in every message. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from bookgen_operator.core.spec.alert_model import (
    OPERATOR_ALERTS,
    QUEUE_ALERTS,
    QUEUE_THRESHOLDS,
    RESERVED_LABELS,
    RESERVED_MESSAGE,
    THRESHOLDS,
    AlertSettings,
)
from bookgen_operator.core.spec.model import SpecError
from bookgen_operator.core.spec.reader import Reader, show, url_like

FIELDS = ("disabled", "thresholds", "labels", "runbookBaseUrl")
ENV = "BOOKGEN_ALERTS"
#: A Prometheus duration of one unit, above zero (a zero window or `for` is not a threshold).
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MAX_LABELS = 16
_MAX_LABEL_VALUE = 256


def read_queue_alerts(metrics: Reader) -> AlertSettings:
    """spec.metrics.alerts: only the queue's own alerts and thresholds can be named."""
    return read_alert_settings(metrics.obj("alerts", FIELDS), QUEUE_ALERTS, QUEUE_THRESHOLDS)


def alerts_from_env(env: Mapping[str, str]) -> AlertSettings:
    """BOOKGEN_ALERTS; unset or empty = no chart-wide tuning."""
    text = env.get(ENV, "").strip()
    if not text:
        return AlertSettings()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{ENV} must be a JSON object (the chart's alerts value): {exc.msg}") from None
    return read_alert_settings(Reader(raw, ENV, FIELDS), (*QUEUE_ALERTS, *OPERATOR_ALERTS), tuple(THRESHOLDS))


def read_alert_settings(a: Reader, alerts: Sequence[str], thresholds: Sequence[str]) -> AlertSettings:
    """One level of tuning, naming only `alerts` and `thresholds`."""
    return AlertSettings(
        disabled=_disabled(a, alerts),
        thresholds=_thresholds(a.obj("thresholds", thresholds)),
        labels=_labels(a),
        runbook_base_url=_runbook_base_url(a),
    )


def _disabled(a: Reader, alerts: Sequence[str]) -> tuple[str, ...] | None:
    if not a.has("disabled"):
        return None
    raw = a.value["disabled"]
    if not isinstance(raw, list | tuple) or not all(isinstance(name, str) for name in raw):
        raise SpecError(f"{a.at('disabled')} must be a list of alert names (got {show(raw)})")
    unknown = [name for name in raw if name not in alerts]
    if unknown:
        raise SpecError(f"{a.at('disabled')}: unknown alert(s) {', '.join(unknown)}; known: {', '.join(alerts)}")
    if len(raw) > len(alerts):
        raise SpecError(f"{a.at('disabled')} must list at most {len(alerts)} alerts (got {len(raw)})")
    return tuple(dict.fromkeys(raw))


def _thresholds(t: Reader) -> dict[str, str]:
    """Each set threshold as the PromQL text its placeholder takes (`30m`, `3600`)."""
    out: dict[str, str] = {}
    for name, threshold in THRESHOLDS.items():
        if not t.has(name):
            continue
        if threshold.kind == "duration":
            value = t.string(name, threshold.default, max_len=16)
            if not _DURATION.match(value):
                raise SpecError(f"{t.at(name)} must be a Prometheus duration such as 90s, 30m or 2h "
                                f"(got {show(value)})")
            out[name] = value
        else:
            # A count may be 0 ("any"); an age of 0 s would fire on every queue that has work at all.
            out[name] = str(t.integer(name, 0, 1 if threshold.kind == "seconds" else 0))
    return out


def _labels(a: Reader) -> dict[str, str]:
    raw = a.value.get("labels", {})
    if not isinstance(raw, Mapping) or len(raw) > _MAX_LABELS:
        raise SpecError(f"{a.at('labels')} must be a map of up to {_MAX_LABELS} label names to values "
                        f"(got {show(raw)})")
    for key, value in raw.items():
        if key in RESERVED_LABELS:
            raise SpecError(f"{a.path}: {RESERVED_MESSAGE}")
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or key.startswith("__"):
            raise SpecError(f"{a.at('labels')}: {show(key)} is not a Prometheus label name "
                            "(letters, digits and _, not starting with a digit or __)")
        if not isinstance(value, str) or not 1 <= len(value) <= _MAX_LABEL_VALUE:
            raise SpecError(f"{a.at('labels')}.{key} must be a string of 1 to {_MAX_LABEL_VALUE} characters "
                            f"(got {show(value)})")
    return {str(k): str(v) for k, v in raw.items()}


def _runbook_base_url(a: Reader) -> str:
    url = a.string("runbookBaseUrl", "", max_len=512)
    if url and not url_like(url, ("http://", "https://")):
        raise SpecError(f"{a.at('runbookBaseUrl')} must be an http:// or https:// URL (got {show(url)})")
    return url.rstrip("/")
