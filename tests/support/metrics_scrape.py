"""Scrape a Prometheus endpoint and index its samples, for the metrics tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample_names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


@contextmanager
def live_endpoint(redis_url: str) -> Iterator[str]:
    """The real exporter (HTTP server + collector) on a free port, with every kind of series present."""
    from bookgen_worker.config import Settings
    from bookgen_worker.metrics.exporter import make_registry
    from bookgen_worker.metrics.signals import (
        CELERY_KINDS,
        KINDS,
        count_celery,
        count_task,
        flush,
        observe_celery_runtime,
        observe_runtime,
    )
    from bookgen_worker.metrics.workers import WorkerInfo, publish
    from bookgen_worker.redis_client import get_redis
    from prometheus_client import start_http_server

    from .redis_server import free_port

    settings = Settings(redis_url=redis_url)
    client = get_redis(settings)
    publish(client, settings, WorkerInfo("export@h", "export", "pod", 1, ("export",), 1, 0, time.time()))
    for kind in KINDS:
        count_task(settings, kind, "bookgen.export_to_pdf", "export")
    observe_runtime(settings, "bookgen.export_to_pdf", "export", 0.2)
    for kind in CELERY_KINDS:
        count_celery(settings, kind, "bookgen.export_to_pdf", "h", "export", "ValueError" if kind == "failed" else "")
    observe_celery_runtime(settings, "bookgen.export_to_pdf", "h", "export", 0.2)
    assert flush(), "could not write the metrics to Redis"
    client.lpush("export", json.dumps({"headers": {"bookgen_sent_at": time.time()}}))
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=make_registry(settings))
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
