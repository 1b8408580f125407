"""The job store against a real redis-server: atomic counting, state checks, revocation lists."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from bookgen_worker.config import Settings, settings_from_env
from bookgen_worker.errors import InvalidInput
from bookgen_worker.jobs import store
from bookgen_worker.jobs.records import STAGE_CHAPTERS, STAGE_FRAMING, StepMessage
from bookgen_worker.jobs.states import InvalidTransition, JobState
from bookgen_worker.queues import HIGH_PRIORITY, priority_list_keys
from celery import Celery


@pytest.fixture
def settings(celery_app: Celery, redis_url: str) -> Iterator[Settings]:
    yield settings_from_env({"REDIS_URL": redis_url})


def numbers(messages: list[StepMessage]) -> list[int]:
    return list(ids_by_number(messages))


def ids_by_number(messages: list[StepMessage]) -> dict[int, str]:
    return {int(message.step.split(":")[1]): message.task_id for message in messages}


def running_job(settings: Settings, chapters: int = 10, parallel: int = 4) -> str:
    job_id = store.submit_job(settings, "Ada Lovelace", chapters, 50, "md,pdf", parallel=parallel)
    store.try_transition(settings, job_id, {JobState.PENDING}, JobState.VALIDATING)
    store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.RUNNING, current=1)
    return job_id


def test_submit_stores_a_pending_job_and_queues_its_start(settings: Settings, redis_client: redis.Redis) -> None:
    job_id = store.submit_job(settings, " Ada   Lovelace ", 10, 50, "md,docx,pdf", priority=7)
    job = store.get_job(settings, job_id)
    assert (job.state, job.current, job.total) == (JobState.PENDING, 0, 17)
    assert (job.subject, job.chapters, job.formats) == ("Ada Lovelace", 10, ("markdown", "docx", "pdf"))
    lists = priority_list_keys(HIGH_PRIORITY, settings.priority_steps, settings.priority_separator)
    assert sum(redis_client.llen(key) for key in lists) == 1  # job.start, on the coordination queue
    assert [j.id for j in store.list_jobs(settings)] == [job_id]
    assert set(store.queued_tasks(settings, job_id)) == {"start"}
    assert not redis_client.exists(store.outbox_key(settings, job_id))  # sent, so its outbox entry is gone


def test_bad_input_stores_nothing(settings: Settings, redis_client: redis.Redis) -> None:
    with pytest.raises(InvalidInput):
        store.submit_job(settings, "", 3)
    assert store.list_jobs(settings) == []


def test_chapters_are_claimed_up_to_the_in_flight_limit(settings: Settings) -> None:
    job_id = running_job(settings, chapters=10, parallel=4)
    first = store.claim_chapters(settings, job_id)
    assert numbers(first) == [1, 2, 3, 4]
    assert store.claim_chapters(settings, job_id) == []  # window full
    store.finish_step(settings, job_id, "chapter:1", result={"number": 1})
    assert numbers(store.claim_chapters(settings, job_id)) == [5]
    assert set(store.queued_tasks(settings, job_id)) == {"start", "chapter:2", "chapter:3", "chapter:4", "chapter:5"}


def test_concurrent_finishes_each_count_once(settings: Settings) -> None:
    job_id = running_job(settings, chapters=10, parallel=10)
    store.claim_chapters(settings, job_id)
    steps = [f"chapter:{n}" for n in range(1, 11)] * 3  # every chapter reported three times
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda step: store.finish_step(settings, job_id, step, result={}), steps))
    job = store.get_job(settings, job_id)
    assert (job.current, job.chapters_done, job.in_flight) == (11, 10, 0)


def test_a_paused_job_gets_no_new_chapters_but_counts_finishing_ones(settings: Settings) -> None:
    job_id = running_job(settings, chapters=5, parallel=2)
    store.claim_chapters(settings, job_id)
    store.pause_job(settings, job_id)
    assert store.finish_step(settings, job_id, "chapter:1", result={}) is not None
    assert store.claim_chapters(settings, job_id) == []
    assert store.get_job(settings, job_id).paused_from == "RUNNING"
    with pytest.raises(InvalidTransition):
        store.pause_job(settings, job_id)


def test_cancel_returns_every_queued_task_and_is_final(settings: Settings) -> None:
    job_id = running_job(settings, chapters=5, parallel=3)
    claimed = {message.task_id for message in store.claim_chapters(settings, job_id)}
    job, revoked = store.cancel_job(settings, job_id)
    assert job.state == JobState.CANCELLED
    assert claimed <= set(revoked)
    assert store.finish_step(settings, job_id, "chapter:1", result={}) is None  # late results are ignored
    assert store.claim_chapters(settings, job_id) == []
    assert store.finish_job(settings, job_id, JobState.COMPLETED, "done") is None
    with pytest.raises(InvalidTransition, match="already CANCELLED"):
        store.resume_job(settings, job_id)
    assert store.get_job(settings, job_id).state == JobState.CANCELLED


def test_a_stage_is_entered_exactly_once(settings: Settings) -> None:
    job_id = running_job(settings, chapters=1)
    results = [
        store.enter_stage(settings, job_id, STAGE_CHAPTERS, STAGE_FRAMING,
                          {"introduction": ("bookgen.generate_introduction", ("Ada Lovelace", [], 20))}, "framing")
        for _ in range(3)
    ]
    assert [r is not None for r in results] == [True, False, False]


def test_an_unknown_job_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(store.JobNotFound, match="no job with id 'nope'"):
        store.get_job(settings, "nope")
    with pytest.raises(store.JobNotFound):
        store.pause_job(settings, "nope")


def test_a_paused_job_holds_chapters_at_their_start_and_sends_them_first_on_resume(settings: Settings) -> None:
    job_id = running_job(settings, chapters=5, parallel=2)
    claimed = ids_by_number(store.claim_chapters(settings, job_id))
    assert store.admit_step(settings, job_id, "chapter:1", claimed[1]) == store.RUN
    store.pause_job(settings, job_id)
    assert store.admit_step(settings, job_id, "chapter:2", claimed[2]) == store.HOLD
    assert store.admit_step(settings, job_id, "chapter:2", claimed[2]) == store.DROP  # a duplicate copy
    job = store.get_job(settings, job_id)
    assert (job.held, job.in_flight, job.dispatched) == ((2,), 1, 2)
    assert "chapter:2" not in store.queued_tasks(settings, job_id)

    store.finish_step(settings, job_id, "chapter:1", result={})  # started before the pause: counts
    store.resume_job(settings, job_id)
    assert numbers(store.claim_chapters(settings, job_id)) == [2, 3]
    assert store.get_job(settings, job_id).held == ()


def test_a_cancelled_job_drops_its_tasks_at_their_start(settings: Settings) -> None:
    job_id = running_job(settings, chapters=3, parallel=3)
    claimed = ids_by_number(store.claim_chapters(settings, job_id))
    assert store.admit_step(settings, job_id, "chapter:1", "some-stale-copy") == store.DROP
    store.cancel_job(settings, job_id)
    assert {store.admit_step(settings, job_id, f"chapter:{n}", claimed[n]) for n in claimed} == {store.DROP}


def test_a_finished_job_ages_out_while_a_running_one_stays(settings: Settings, redis_client: redis.Redis) -> None:
    running = running_job(settings)
    cancelled = running_job(settings)
    store.cancel_job(settings, cancelled)
    assert redis_client.ttl(store.job_key(settings, running)) == -1
    assert 0 < redis_client.ttl(store.job_key(settings, cancelled)) <= store.JOB_RETENTION_SECONDS
