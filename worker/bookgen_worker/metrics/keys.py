"""Redis keys of the metrics area (all prefixed with the configured global key prefix)."""

from __future__ import annotations

from ..config import Settings
from ..redis_client import prefixed

#: hash "<kind>|<task>|<queue>" -> count, kind in sent/succeeded/failed/retried
TASK_COUNTERS = "bookgen:metrics:tasks"
#: hash "<task>|<queue>|<le or sum or count>" -> value (per-bucket, not cumulative)
TASK_RUNTIME = "bookgen:metrics:runtime"
#: hash hostname -> JSON WorkerInfo
WORKERS = "bookgen:workers"
#: hash hostname -> the same worker's load in one tab-separated line (workers.load_line), what measure() reads:
#: a line is matched server-side in a fraction of what decoding the JSON costs (500 workers: ~1 ms vs ~5 ms)
WORKER_LOAD = "bookgen:workers:load"
#: sorted set hostname -> updated_at of its load line; hash of the load lines' sums; hash per pool (this prefix +
#: pool name) hostname -> pod of its busy workers. Kept by the registry's scripts (registry_scripts.py) so that
#: measure() reads sums instead of parsing every line.
WORKER_SEEN = "bookgen:workers:seen"
WORKER_SUMS = "bookgen:workers:sums"
WORKER_BUSY = "bookgen:workers:busy:"
#: string set for a minute by the sweep that last rebuilt the sums (one rebuild a minute across all workers)
WORKER_REBUILT = "bookgen:workers:rebuilt"
#: string: JSON of the latest Snapshot, written by the get_queue_stats task
SNAPSHOT = "bookgen:metrics:snapshot"
#: string: JSON of the latest health_check / get_worker_stats / process_dead_letter_queue results
HEALTH = "bookgen:metrics:health"
WORKER_STATS = "bookgen:metrics:worker_stats"
DEAD_LETTER_SUMMARY = "bookgen:metrics:dead_letters"


def key(settings: Settings, name: str) -> str:
    return prefixed(settings, name)

#: hash "<kind>|<name>|<hostname>|<queue>|<exception>" -> count: the celery-exporter family
#: (kind in sent/received/started/succeeded/failed/rejected/revoked/retried; exception only for failed)
CELERY_COUNTERS = "bookgen:metrics:celery:tasks"
#: hash "<name>|<hostname>|<queue>|<le or sum or count>" -> value (per-bucket, successes only, like celery-exporter)
CELERY_RUNTIME = "bookgen:metrics:celery:runtime"
