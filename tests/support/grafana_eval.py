"""Evaluate Grafana dashboard targets and alert expressions through Prometheus's HTTP API, the way
Grafana and the rule evaluator would: variables resolved from their `label_values(...)` queries,
`$__range` / `$__rate_interval` substituted, instant targets at the end of the window, the others as
range queries over it. An expression "returns data" when some choice of the dashboard's variable
values (a user can pick any) gives at least one sample.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .prometheus import PrometheusAPI, PromQLError

LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*(?P<label>\w+)\s*\)\s*$", re.S)
#: Variable values tried per variable (the first ones, in Grafana's sorted order).
MAX_VALUES = 8


@dataclass
class Result:
    source: str  # dashboard uid or "alerts"
    title: str  # panel title, variable name or alert name
    expr: str
    returned: bool = False
    error: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.returned


@dataclass
class Window:
    start: float
    end: float
    step: float = 1.0
    rate_interval: str = "4s"  # Grafana: max($__interval + scrape interval, 4 x scrape interval), scrape 1 s

    @property
    def range(self) -> str:
        return f"{max(1, int(self.end - self.start))}s"


@dataclass
class Variable:
    name: str
    query: str
    include_all: bool = False
    all_value: str | None = None
    values: list[str] = field(default_factory=list)


def substitute(expr: str, values: Mapping[str, str], window: Window) -> str:
    text = expr.replace("$__rate_interval", window.rate_interval).replace("$__range", window.range)
    text = text.replace("$__interval", f"{window.step:g}s")
    for name in sorted(values, key=len, reverse=True):  # $queue_name before $queue
        text = text.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return text


def _variables(dashboard: Mapping[str, Any]) -> list[Variable]:
    out = []
    for raw in dashboard["templating"]["list"]:
        if raw.get("type") != "query":
            continue
        query = raw["query"]["query"] if isinstance(raw["query"], Mapping) else raw["query"]
        out.append(Variable(raw["name"], query, bool(raw.get("includeAll")), raw.get("allValue")))
    return out


def resolve(api: PrometheusAPI, variable: Variable, chosen: Mapping[str, str], window: Window) -> list[str]:
    match = LABEL_VALUES.match(variable.query)
    if match is None:
        raise ValueError(f"unsupported variable query {variable.query!r}")
    selector = substitute(match.group("selector"), chosen, window)
    return api.label_values(match.group("label"), selector, window.start, window.end)


def choices(api: PrometheusAPI, variables: Sequence[Variable], window: Window,
            results: list[Result], source: str) -> list[dict[str, str]]:
    """Every combination of variable values a user could pick, resolving chained variables in order."""
    combos: list[dict[str, str]] = [{}]
    for variable in variables:
        extended = []
        returned = False
        for combo in combos:
            try:
                values = resolve(api, variable, combo, window)
            except PromQLError as exc:
                results.append(Result(source, f"${variable.name}", variable.query, error=str(exc)))
                return []
            returned = returned or bool(values)
            options = values[:MAX_VALUES] or [""]  # an empty variable: Grafana substitutes ''
            if variable.include_all:
                options = [variable.all_value or "|".join(values) or ".*"]
            extended += [{**combo, variable.name: value} for value in options]
        combos = extended
        note = "" if returned else "no series carries this label"
        results.append(Result(source, f"${variable.name}", variable.query, returned=returned, note=note))
    return combos


def _returns(api: PrometheusAPI, expr: str, instant: bool, window: Window) -> bool:
    if instant:
        return bool(api.instant(expr, at=window.end))
    return any(series["values"] for series in api.range(expr, window.start, window.end, window.step))


def targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"], bool(target.get("instant"))


def evaluate_dashboard(api: PrometheusAPI, source: str, dashboard: Mapping[str, Any], window: Window) -> list[Result]:
    results: list[Result] = []
    combos = choices(api, _variables(dashboard), window, results, source)
    for title, expr, instant in targets(dashboard):
        result = Result(source, title, expr)
        for combo in combos or [{}]:
            try:
                if _returns(api, substitute(expr, combo, window), instant, window):
                    result.returned = True
                    result.note = ", ".join(f"{k}={v}" for k, v in combo.items())
                    break
            except PromQLError as exc:
                result.error = str(exc)
                break
        results.append(result)
    return results


def evaluate_alerts(api: PrometheusAPI, rules: Sequence[Mapping[str, Any]], window: Window,
                    source: str = "alerts") -> list[Result]:
    """Each rule's expression as a range query over the window: data means it was true at some point."""
    results = []
    for rule in rules:
        result = Result(source, str(rule["alert"]), str(rule["expr"]))
        try:
            result.returned = _returns(api, result.expr, False, window)
        except PromQLError as exc:
            result.error = str(exc)
        results.append(result)
    return results


def report(results: Sequence[Result]) -> str:
    lines = []
    for r in results:
        mark = "ok  " if r.ok else ("ERR " if r.error else "none")
        lines.append(f"  {mark} {r.source:<28} {r.title[:48]:<48} {r.error or r.note}")
    return "\n".join(lines)


