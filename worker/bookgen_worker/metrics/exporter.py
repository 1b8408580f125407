"""The Prometheus endpoint: a bootstep of the worker's MAIN process serving BookGenCollector.

Started by the worker that consumes the `monitoring` queue (port BOOKGEN_METRICS_PORT, default 9808)
or by any worker with BOOKGEN_METRICS_PORT set; BOOKGEN_METRICS_PORT=off disables it. It starts
after the pool, in the parent only, and reads Redis on each scrape, so pool children being
recycled cannot lose or duplicate a number.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from celery import bootsteps
from prometheus_client import CollectorRegistry, start_http_server

from ..config import ConfigError, Settings
from ..queues import MONITORING
from ..redis_client import get_redis
from .collector import BookGenCollector
from .workers import consumed_queues

logger = logging.getLogger(__name__)

PORT_ENV = "BOOKGEN_METRICS_PORT"
DEFAULT_PORT = 9808


def metrics_port(env: Mapping[str, str], queues: Sequence[str]) -> int | None:
    """The port to serve on, or None when this worker should not serve metrics."""
    raw = env.get(PORT_ENV, "").strip().lower()
    if raw in ("off", "false", "no", "disabled"):
        return None
    if raw:
        try:
            port = int(raw)
        except ValueError:
            raise ConfigError(f"{PORT_ENV} must be a port number or 'off' (got {raw!r})") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{PORT_ENV} must be between 1 and 65535 (got {port})")
        return port
    return DEFAULT_PORT if MONITORING in queues else None


def make_registry(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BookGenCollector(get_redis(settings), settings))
    return registry


class ExporterStep(bootsteps.StartStopStep):  # type: ignore[misc]
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._server: Any = None

    def start(self, worker: Any) -> None:
        port = metrics_port(os.environ, consumed_queues(worker))
        if port is None:
            return
        settings: Settings = worker.app.bookgen_settings
        try:
            self._server, _thread = start_http_server(port, registry=make_registry(settings))
        except OSError as exc:  # a busy port must not take the worker down with it
            logger.error("metrics endpoint not started on port %d: %s", port, exc)
            return
        logger.info("metrics endpoint serving on port %d (pid %d)", port, os.getpid())

    def stop(self, worker: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    shutdown = stop
