"""A real Prometheus (Debian's `prometheus` package, with `promtool`) for the metrics tests.

`start_prometheus` runs the server on a free loopback port with a throw-away TSDB, scraping the
given targets every second; `PrometheusAPI` queries its HTTP API the way Grafana does (instant and
range queries, label values for dashboard variables).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from .redis_server import free_port
from .waiting import wait_for

SCRAPE_INTERVAL = 1.0


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run ./scripts/test, which installs Debian's prometheus package")
    return found


@dataclass(frozen=True)
class Target:
    """One scrape job: `job` and extra target labels as prometheus-operator would set them."""

    job: str
    address: str  # host:port
    labels: Mapping[str, str]


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def instant(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return list(self._get("/api/v1/query", params)["result"])

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        return list(data["result"])

    def label_values(self, label: str, selector: str, start: float, end: float) -> list[str]:
        """What Grafana's `label_values(selector, label)` variable query asks Prometheus."""
        params = [("match[]", selector), ("start", start), ("end", end)]
        return sorted(self._get(f"/api/v1/label/{label}/values", params))

    def targets_up(self) -> dict[str, str]:
        data = self._get("/api/v1/targets", {})
        return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}


class PromQLError(Exception):
    pass


@contextmanager
def start_prometheus(workdir: Path, targets: Sequence[Target], rule_files: Sequence[Path] = ()) -> Iterator[
        PrometheusAPI]:
    port = free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL:g}s", "evaluation_interval": f"{SCRAPE_INTERVAL:g}s",
                   "scrape_timeout": f"{SCRAPE_INTERVAL:g}s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": t.job, "static_configs": [{"targets": [t.address], "labels": dict(t.labels)}]}
            for t in targets
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    api = PrometheusAPI(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if process.poll() is not None:
            log_text = (workdir / "prometheus.log").read_text()
            raise RuntimeError(f"prometheus exited with {process.returncode}: {log_text[-3000:]}")
        try:
            return httpx.get(f"{api.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=60, what="prometheus to be ready")
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def now() -> float:
    return time.time()
