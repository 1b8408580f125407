"""The thresholds of the alert rule files (worker/bookgen_worker/metrics/assets/alerts.yaml and
operator-alerts.yaml): each is a placeholder `${<name>:<default>}` wherever the rules use it (a range, a
`for`, a comparison, the text of an annotation), so one value changes all of them together. Prometheus never
sees a placeholder: the operator fills the queue rules (monitoring.py), the chart the operator rules
(templates/prometheusrule.yaml, with the same pattern), and the tests both.

`${` appears nowhere else in the files: PromQL has no `$`, and the annotations' Prometheus templates
write `{{ $value }}`, never `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bookgen_operator.core.objects import JSON

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*):([^}]*)\}")


def placeholders(text: str) -> dict[str, str]:
    """Every threshold of `text` and its default; ValueError when a name is given two defaults (they
    would drift apart: the range and the `for` of one rule must change together)."""
    found: dict[str, str] = {}
    for name, default in PLACEHOLDER.findall(text):
        if found.setdefault(name, default) != default:
            raise ValueError(f"threshold {name} has two defaults: {found[name]!r} and {default!r}")
    return found


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by its value in `values`, else by its default."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(2)), text)


def fill_tree(node: object, values: Mapping[str, str]) -> object:
    """fill() on every string of a parsed rule; a fresh copy, so the parsed file stays as it is."""
    if isinstance(node, str):
        return fill(node, values)
    if isinstance(node, Mapping):
        return {key: fill_tree(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [fill_tree(item, values) for item in node]
    return node



def fill_rule(rule: JSON, values: Mapping[str, str]) -> JSON:
    """fill_tree() on one rule of a parsed rule file."""
    return {key: fill_tree(value, values) for key, value in rule.items()}
