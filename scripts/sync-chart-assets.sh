#!/usr/bin/env bash
# Copies the canonical CRD, Grafana dashboard and alert rules (queues and operator) into the Helm chart (Helm can only read
# files inside the chart directory), and regenerates the chart README's values table from the
# comments in values.yaml. tests/chart/test_assets_sync.py fails when a copy or the table is stale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/bookgen-operator"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

install -m 0644 "$ROOT/crds/bookgenqueue.yaml" "$CHART/crds/bookgenqueue.yaml"
install -m 0644 "$ROOT/worker/bookgen_worker/metrics/assets/dashboard.json" "$CHART/files/dashboard.json"
install -m 0644 "$ROOT/worker/bookgen_worker/metrics/assets/alerts.yaml" "$CHART/files/alerts.yaml"
install -m 0644 "$ROOT/worker/bookgen_worker/metrics/assets/operator-alerts.yaml" "$CHART/files/operator-alerts.yaml"
"$PYTHON" "$CHART/hack/values_table.py" --write "$CHART/README.md"
echo "sync-chart-assets: chart assets and values table are up to date" >&2
