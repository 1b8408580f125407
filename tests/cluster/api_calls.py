"""Every API call the real operator made in these tests, read from the audit log.

operator/api-calls.json lists the (verb, group, resource, subresource) the operator uses, and the
chart's RBAC is checked against it (tests/chart/test_rbac.py). Each operator run on the real control
plane adds what its ServiceAccount did to OBSERVED; tests/cluster/test_recorded_api_calls.py (the
last module of this folder) fails when a real call is missing from the file.
"""

from __future__ import annotations

import json
from pathlib import Path

API_CALLS_FILE = Path(__file__).resolve().parents[2] / "operator" / "api-calls.json"
OBSERVED: set[tuple[str, str, str, str]] = set()
#: Modules whose operator runs feed OBSERVED; the check runs only when all of them ran.
CONTRIBUTORS = frozenset({"test_operator.py", "test_real_node_work.py"})


def recorded() -> set[tuple[str, str, str, str]]:
    items = json.loads(API_CALLS_FILE.read_text()) if API_CALLS_FILE.exists() else []
    return {(i["verb"], i["group"] or "", i["resource"], i.get("subresource") or "") for i in items}


def write(calls: set[tuple[str, str, str, str]]) -> None:
    items = [{"verb": v, "group": g, "resource": r, "subresource": s or None} for v, g, r, s in sorted(calls)]
    API_CALLS_FILE.write_text(json.dumps(items, indent=2) + "\n")
