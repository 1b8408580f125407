"""The beat schedule of the monitoring tasks (applied to the app by configure_app).

Queue stats refresh what the metrics endpoint and `bookgen status` show, so they run every
`queue_stats_interval` seconds (BOOKGEN_QUEUE_STATS_INTERVAL, default 5); the rest are housekeeping,
among them the book jobs' outbox sweep (BOOKGEN_JOB_SWEEP_INTERVAL, default 30; see jobs/outbox.py).
Every entry expires after its own interval: a backlog of stale monitoring runs is worth nothing.
"""

from __future__ import annotations

from typing import Any

from .config import Settings
from .queues import MONITORING, task_name

HEALTH_CHECK_INTERVAL = 300.0
CLEANUP_INTERVAL = 3600.0
DEAD_LETTER_INTERVAL = 600.0
WORKER_STATS_INTERVAL = 30.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    def entry(short: str, every: float) -> dict[str, Any]:
        return {
            "task": task_name(short),
            "schedule": every,
            "options": {"queue": MONITORING, "routing_key": MONITORING, "expires": every},
        }

    return {
        "bookgen-queue-stats": entry("get_queue_stats", settings.queue_stats_interval),
        "bookgen-worker-stats": entry("get_worker_stats", WORKER_STATS_INTERVAL),
        "bookgen-health-check": entry("health_check", HEALTH_CHECK_INTERVAL),
        "bookgen-cleanup-expired-results": entry("cleanup_expired_results", CLEANUP_INTERVAL),
        "bookgen-process-dead-letters": entry("process_dead_letter_queue", DEAD_LETTER_INTERVAL),
        "bookgen-job-sweep": entry("job.sweep", settings.job_sweep_interval),
    }
