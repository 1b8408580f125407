"""The BookGen Celery application.

`celery -A bookgen_worker.app worker -Q content_generation,high_priority` runs a pool; the same
module is what beat, Flower and the operator's worker Deployments point at.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from celery import Celery, signals
from kombu.entity import Exchange, Queue

from . import shutdown  # noqa: F401  (connects the bounded warm shutdown, see shutdown.py)
from .beat import beat_schedule
from .config import Settings, settings_from_env
from .metrics.install import install as install_metrics
from .patches import kombu_full, kombu_redis, prefork_pool
from .queues import DEFAULT, DEFAULT_PRIORITY, QUEUES, consumption_order, task_routes, transport_priority

# Before any broker connection exists: a Redis restart (patches/kombu_redis.py) or a full Redis
# (patches/kombu_full.py) must not kill a busy worker or lose its message.
kombu_redis.apply()
kombu_full.apply()

TASK_MODULES = (
    "bookgen_worker.tasks.generation",
    "bookgen_worker.tasks.validation",
    "bookgen_worker.tasks.export",
    "bookgen_worker.tasks.monitoring",
    "bookgen_worker.jobs.orchestration",
)


#: Extra task modules to import, comma-separated: how tests and extensions add their own tasks to
#: the same app without forking it (`celery -A bookgen_worker.app` always finds them).
EXTRA_TASK_MODULES_ENV = "BOOKGEN_EXTRA_TASK_MODULES"


def task_modules(env: Mapping[str, str] | None = None) -> list[str]:
    extra = (env if env is not None else os.environ).get(EXTRA_TASK_MODULES_ENV, "")
    return [*TASK_MODULES, *(name.strip() for name in extra.split(",") if name.strip())]


def create_app(settings: Settings | None = None) -> Celery:
    app = Celery("bookgen", include=task_modules())
    if settings is not None:
        configure_app(app, settings)
    else:
        # The environment is read when the configuration is first needed, not at import: a bad
        # variable must not break `bookgen --help`, and the CLI picks its broker before any use.
        app.add_defaults(lambda: _configure_from_env(app))
    install_metrics(app)  # task counters, publish-time header, worker registry/heartbeat/exporter bootsteps
    return app


def configure_app(app: Celery, settings: Settings) -> None:
    """(Re)apply settings to an app: used at start-up, and by processes that learn the broker late
    (the local runtime, tests) before they send their first task."""
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.backend_url,
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue=DEFAULT,
        task_default_exchange=DEFAULT,
        task_default_routing_key=DEFAULT,
        task_routes=task_routes(),
        task_default_priority=transport_priority(DEFAULT_PRIORITY),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A killed worker's task must come back: ack only after the task ran, and requeue it when
        # the child process dies under it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.soft_time_limit,
        task_time_limit=settings.time_limit,
        result_expires=settings.result_expires,
        result_extended=True,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        worker_max_tasks_per_child=settings.max_tasks_per_child,
        broker_transport_options=settings.transport_options(),
        result_backend_transport_options=(
            {"global_keyprefix": settings.global_keyprefix} if settings.global_keyprefix else {}
        ),
        broker_connection_retry_on_startup=True,
        task_track_started=settings.track_started,
        # Flower enables worker events itself; BOOKGEN_TASK_EVENTS=true also sends task-sent events.
        task_send_sent_event=settings.task_events,
        worker_send_task_events=settings.task_events,
        # Results nobody asked for (the job machinery's own messages, see jobs/outbox.py) are not
        # stored, but a failure always is: the job layer reads it to say why a step failed.
        task_store_errors_even_if_ignored=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
    )
    app.bookgen_settings = settings
    _forget_connections(app)


def _forget_connections(app: Celery) -> None:
    """Drop cached broker pools and result backends so the next send uses the new settings."""
    # Not force_close_all(): kombu shares pools per URL process-wide, and a closed one stays cached.
    app._after_fork()  # Celery's own reset of the connection and producer pools
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


def _configure_from_env(app: Celery) -> dict[str, object]:
    """Celery's lazy defaults hook: configure from the environment unless configure_app ran first.
    A bad variable raises ConfigError here, where the process first needs its configuration."""
    if not hasattr(app, "bookgen_settings"):
        configure_app(app, settings_from_env())
    return {}


def _patch_pool(**_: object) -> None:
    """In a worker, before its pool exists: a recycled child is replaced at once (patches/prefork_pool.py).
    Not at import: the CLI never runs a pool and need not load it."""
    prefork_pool.apply()


signals.worker_init.connect(_patch_pool)


def _poll_coordination_first(sender: object = None, instance: object = None, **_: object) -> None:
    """After -Q is applied, before consuming starts: high_priority is polled first (queues.consumption_order)."""
    queues = getattr(getattr(instance, "app", None), "amqp", None)
    queues = getattr(queues, "queues", None)
    if queues is None:
        return
    names = list(queues.consume_from)
    ordered = consumption_order(names)
    if ordered != names:
        queues.select(ordered)


signals.celeryd_after_setup.connect(_poll_coordination_first)

#: How long a worker keeps trying to publish (a link callback, a retry, the steps a job sends next)
#: when Redis is away. Celery's default gives up after 3 attempts (with redis-py's own backoff, some
#: 20 s here) and marks the finished task FAILED: on the real node, a Redis pod deleted mid-job (back on
#: its volume after a reschedule, the AOF load and its readiness probe) turned a chapter that had been
#: written into a failed step, and the book into COMPLETED_WITH_ERRORS. Now about 90 attempts, a
#: second apart. Workers only: a command-line client keeps Celery's quicker failure.
WORKER_PUBLISH_RETRY = {"max_retries": 90, "interval_start": 0, "interval_step": 1, "interval_max": 1}


def _patient_publishing(sender: object = None, conf: object = None, **_: object) -> None:
    """Before the pool forks: its children inherit the policy with the configuration."""
    app = getattr(sender, "app", None)
    if app is not None:
        app.conf.task_publish_retry_policy = dict(WORKER_PUBLISH_RETRY)


signals.worker_init.connect(_patient_publishing)


def bookgen_settings(celery_app: Celery) -> Settings:
    if not hasattr(celery_app, "bookgen_settings"):
        celery_app.conf.broker_url  # noqa: B018  (loads the lazy configuration, which sets it)
    return celery_app.bookgen_settings  # type: ignore[no-any-return]


app = create_app()
