"""A small PromQL checker for dashboards and alert rules: balanced brackets, known functions, and the
metric names an expression reads (so tests can compare them with what the endpoint exports)."""

from __future__ import annotations

import re

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp_max",
    "clamp_min", "count", "count_over_time", "delta", "deriv", "floor", "group", "histogram_quantile",
    "idelta", "increase", "irate", "label_replace", "max", "max_over_time", "min", "min_over_time",
    "predict_linear", "quantile", "quantile_over_time", "rate", "resets", "round", "scalar", "sort",
    "sort_desc", "stddev", "sum", "sum_over_time", "time", "timestamp", "topk", "vector", "label_values",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
PAIRS = {")": "(", "]": "[", "}": "{"}


def balanced(expr: str) -> bool:
    stack: list[str] = []
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in PAIRS and (not stack or stack.pop() != PAIRS[char]):
            return False
    return not stack


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, grouping clauses and ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"label_values\(\s*([^,()]*?)\s*,\s*\w+\s*\)", r"(\1)", text)  # Grafana: (metric, label)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if call and word in FUNCTIONS:
            continue
        if word in KEYWORDS or word in FUNCTIONS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def unknown_functions(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    called = set(re.findall(r"([a-zA-Z_]\w*)\s*\(", text))
    return called - FUNCTIONS - KEYWORDS
