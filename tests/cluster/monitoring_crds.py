"""The real prometheus-operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule) for the control plane.

They come from the prometheus-operator module on the Go module proxy, pinned in monitoring-crds/go.mod
and checked against monitoring-crds/go.sum by `go mod download`: the same bytes kube-prometheus-stack
installs (example/prometheus-operator-crd/ of the tagged release), with no download site of our own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

MODULE_DIR = Path(__file__).parent / "monitoring-crds"
MODULE = "github.com/prometheus-operator/prometheus-operator"
#: The kinds the chart and the operator create; the other CRDs of the release are not needed here.
KINDS = ("servicemonitors", "podmonitors", "prometheusrules")


def crd_files() -> list[Path]:
    """Download (or reuse from the Go module cache) the pinned release and return the CRD files we use."""
    result = subprocess.run(["go", "mod", "download", "-json", MODULE], cwd=MODULE_DIR, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    root = Path(json.loads(result.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [root / f"monitoring.coreos.com_{kind}.yaml" for kind in KINDS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(f"the pinned prometheus-operator release has no {', '.join(missing)}")
    return files
