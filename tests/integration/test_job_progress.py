"""A job's progress follows its chapters as they finish, not after the whole chapter backlog.

The content pool consumes both content_generation and high_priority (BookGen's original worker commands
list them in that order); kombu serves a worker's queues in order at equal priority, so the step callbacks used to wait
behind every queued chapter: progress stayed 0 while chapters finished (issue 15, item 4).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from bookgen_worker.app import bookgen_settings
from bookgen_worker.jobs import store
from bookgen_worker.queues import CONTENT_GENERATION, DEFAULT_POOLS, HIGH_PRIORITY, priority_list_keys
from celery import Celery

from tests.support.waiting import wait_for
from tests.support.workers import running_worker

CHAPTERS = 12
#: Each generated text takes this long, so the chapters queue up behind two slots.
OFFLINE_SECONDS = "0.5"
SUCCEEDED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]+\] "
                       r"Task bookgen\.generate_chapter\[[^\]]+\] succeeded", re.M)


def chapter_finish_times(log: str) -> list[float]:
    return sorted(datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in SUCCEEDED.findall(log))


def test_each_chapter_shows_in_the_job_progress_within_two_seconds_while_others_are_pending(
    celery_app: Celery, workdir: Path
) -> None:
    settings = bookgen_settings(celery_app)
    content = next(pool for pool in DEFAULT_POOLS if pool.name == "content")
    assert content.concurrency == 2
    chapter_lists = priority_list_keys(CONTENT_GENERATION, settings.priority_steps, settings.priority_separator)
    client = celery_app.backend.client  # the same Redis
    seen: list[tuple[float, int, int]] = []  # (when, chapters done per the job, chapters pending in Redis)

    with running_worker(
        redis_url=celery_app.conf.broker_url, queues=[CONTENT_GENERATION, HIGH_PRIORITY], name="content",
        workdir=workdir, concurrency=content.concurrency, extra_env={"BOOKGEN_OFFLINE_SECONDS": OFFLINE_SECONDS},
    ) as worker:
        job_id = store.submit_job(settings, "Ada Lovelace", CHAPTERS, 40, "md", parallel=CHAPTERS)

        def all_chapters_counted() -> bool:
            done = store.get_job(settings, job_id).chapters_done
            seen.append((time.time(), done, sum(int(client.llen(key)) for key in chapter_lists)))
            return done == CHAPTERS

        wait_for(all_chapters_counted, timeout=120, interval=0.02, what="every chapter to count in the job")
        log = worker.log()

    finished = chapter_finish_times(log)
    assert len(finished) == CHAPTERS
    for number, finished_at in enumerate(finished, start=1):
        counted_at = next(when for when, done, _pending in seen if done >= number)
        assert counted_at - finished_at <= 2.0, f"chapter {number} counted {counted_at - finished_at:.1f}s late"
    # And this happened while chapters were still waiting: the first completion was counted with a backlog.
    first = next((when, pending) for when, done, pending in seen if done >= 1)
    assert first[1] >= CHAPTERS - 4, f"only {first[1]} chapters were pending when the first was counted"
