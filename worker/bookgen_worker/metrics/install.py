"""Hook the metrics area into a Celery app: signal handlers and worker bootsteps.

Called once by `create_app`; adding bootsteps only affects processes that start a worker.
"""

from __future__ import annotations

from celery import Celery

from ..heartbeat import HeartbeatStep
from . import signals
from .exporter import ExporterStep
from .workers import WorkerRegistryStep


def install(app: Celery) -> None:
    signals.connect(app)
    for step in (WorkerRegistryStep, HeartbeatStep, ExporterStep):
        app.steps["worker"].add(step)
