"""The outbox of book jobs against a real redis-server: what is recorded with each step, what the
sweep sends again, and what it leaves alone (jobs/outbox.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from bookgen_worker.beat import beat_schedule
from bookgen_worker.config import ConfigError, Settings, settings_from_env
from bookgen_worker.jobs import outbox, store
from bookgen_worker.jobs.records import STAGE_CHAPTERS, STAGE_FRAMING, StepMessage
from bookgen_worker.jobs.states import JobState
from bookgen_worker.queues import CONTENT_GENERATION, HIGH_PRIORITY, MONITORING, priority_list_keys, queue_for_task
from celery import Celery


@pytest.fixture
def settings(celery_app: Celery, redis_url: str) -> Iterator[Settings]:
    yield settings_from_env({"REDIS_URL": redis_url})


def overdue(settings: Settings) -> Settings:
    """Settings under which every entry counts as lost: the sweep sends all of them."""
    return replace(settings, job_sweep_age=0)


def running_job(settings: Settings, chapters: int = 4, parallel: int = 2) -> str:
    job_id = store.submit_job(settings, "Ada Lovelace", chapters, 50, "md", parallel=parallel)
    store.try_transition(settings, job_id, {JobState.PENDING}, JobState.VALIDATING)
    store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.RUNNING, current=1)
    return job_id


def queued(redis_client: redis.Redis, settings: Settings, queue: str = CONTENT_GENERATION) -> list[dict[str, Any]]:
    """The messages waiting in a queue: task id, name, arguments and callbacks, read from Redis."""
    found = []
    for key in priority_list_keys(queue, settings.priority_steps, settings.priority_separator):
        for raw in redis_client.lrange(key, 0, -1):
            message = json.loads(raw)
            args, _kwargs, embed = json.loads(base64.b64decode(message["body"]))
            found.append({
                "id": message["headers"]["id"], "task": message["headers"]["task"], "args": args,
                "link": [(c["task"], c["args"]) for c in embed.get("callbacks") or ()],
                "link_error": [(c["task"], c["args"]) for c in embed.get("errbacks") or ()],
            })
    return sorted(found, key=lambda message: (message["task"], json.dumps(message["args"])))


def by_id(messages: list[StepMessage]) -> dict[str, StepMessage]:
    return {message.task_id: message for message in messages}


class ClientDied(Exception):
    """Stands for `bookgen submit` or `bookgen resume` killed right after Redis accepted its transaction."""


def die(*_args: object, **_kwargs: object) -> None:
    raise ClientDied


def submitted_by_a_dying_client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "send_step", die)
        with pytest.raises(ClientDied):
            store.submit_job(settings, "Ada Lovelace", 4, 50, "md", parallel=2)
    [job] = store.list_jobs(settings)
    return job.id


def resumed_by_a_dying_client(settings: Settings, monkeypatch: pytest.MonkeyPatch, job_id: str) -> StepMessage:
    """Resume the job with a client that dies before sending; return the message it left in the outbox."""
    before = by_id(outbox.entries(settings, job_id))
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "send_step", die)
        with pytest.raises(ClientDied):
            store.resume_job(settings, job_id)
    [left] = [message for message in outbox.entries(settings, job_id) if message.task_id not in before]
    return left


def play_the_start_task(settings: Settings, redis_client: redis.Redis, job_id: str) -> None:
    """What job.start does first: forget its registration, then take the job from PENDING."""
    redis_client.hdel(store.tasks_key(settings, job_id), "start")
    assert store.try_transition(settings, job_id, {JobState.PENDING}, JobState.VALIDATING) is not None


def kicks(redis_client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """The job.start / job.advance messages waiting on the coordination queue."""
    return queued(redis_client, settings, HIGH_PRIORITY)


def test_a_claim_records_each_chapters_message_in_the_outbox_with_its_registration(
    settings: Settings, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings, chapters=4, parallel=2)
    claimed = store.claim_chapters(settings, job_id)
    assert [(m.step, m.task, m.args, m.priority) for m in claimed] == [
        ("chapter:1", "bookgen.generate_chapter", ("Ada Lovelace", 1, None, 50), 5),
        ("chapter:2", "bookgen.generate_chapter", ("Ada Lovelace", 2, None, 50), 5),
    ]
    assert outbox.entries(settings, job_id) == claimed
    assert {m.step: m.task_id for m in claimed}.items() <= store.queued_tasks(settings, job_id).items()
    assert queued(redis_client, settings) == []  # recorded, not sent: sending is the caller's part


def test_publishing_sends_the_step_with_the_jobs_callbacks_and_forgets_its_entry(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings)
    first, second = store.claim_chapters(settings, job_id)
    outbox.publish(celery_app, settings, job_id, first)
    assert queued(redis_client, settings) == [{
        "id": first.task_id, "task": "bookgen.generate_chapter", "args": ["Ada Lovelace", 1, None, 50],
        "link": [(store.STEP_DONE_TASK, [job_id, "chapter:1"])],
        "link_error": [(store.STEP_FAILED_TASK, [job_id, "chapter:1"])],
    }]
    assert outbox.entries(settings, job_id) == [second]


def test_the_sweep_leaves_fresh_entries_alone_and_sends_overdue_ones_again_under_the_same_ids(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings)
    claimed = by_id(store.claim_chapters(settings, job_id))  # and the worker died: nothing was sent
    assert settings.job_sweep_age == 30
    assert outbox.sweep(celery_app, settings) == {"resent": 0, "dropped": 0}
    assert outbox.sweep(celery_app, settings, now=time.time() + 29) == {"resent": 0, "dropped": 0}
    assert queued(redis_client, settings) == []
    assert by_id(outbox.entries(settings, job_id)) == claimed

    assert outbox.sweep(celery_app, settings, now=time.time() + 31) == {"resent": 2, "dropped": 0}
    sent = queued(redis_client, settings)
    assert {message["id"] for message in sent} == set(claimed)
    assert [message["link"] for message in sent] == [[(store.STEP_DONE_TASK, [job_id, f"chapter:{n}"])] for n in (1, 2)]
    assert outbox.entries(settings, job_id) == []
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 0}
    job = store.get_job(settings, job_id)
    assert (job.in_flight, job.dispatched) == (2, 2)  # sending again reserves nothing more


def test_a_stage_entered_but_not_sent_is_sent_by_the_sweep(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings, chapters=1, parallel=1)
    store.claim_chapters(settings, job_id)
    store.finish_step(settings, job_id, "chapter:1", result={"number": 1, "title": "One"})
    steps = {"introduction": ("bookgen.generate_introduction", ("Ada Lovelace", ["One"], 16)),
             "conclusion": ("bookgen.generate_conclusion", ("Ada Lovelace", ["One"], 16))}
    entered = store.enter_stage(settings, job_id, STAGE_CHAPTERS, STAGE_FRAMING, steps, "framing")
    assert entered is not None and by_id(entered).items() <= by_id(outbox.entries(settings, job_id)).items()

    # The chapter's own entry is stale (it was counted): dropped, not sent.
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 2, "dropped": 1}
    sent = queued(redis_client, settings)
    assert [(m["id"], m["task"], m["args"]) for m in sent] == [
        (by_step.task_id, by_step.task, list(by_step.args)) for by_step in sorted(entered, key=lambda m: m.step)
    ]


def test_the_sweep_drops_the_entries_of_a_cancelled_job(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings)
    store.claim_chapters(settings, job_id)
    store.cancel_job(settings, job_id)
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 2}
    assert queued(redis_client, settings) == []
    assert not redis_client.exists(store.outbox_key(settings, job_id))


def test_a_paused_job_keeps_its_entries_until_it_runs_again(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings)
    claimed = by_id(store.claim_chapters(settings, job_id))
    store.pause_job(settings, job_id)
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 0}
    assert by_id(outbox.entries(settings, job_id)) == claimed
    assert queued(redis_client, settings) == []

    store.resume_job(settings, job_id)
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 2, "dropped": 0}
    assert {message["id"] for message in queued(redis_client, settings)} == set(claimed)


def test_entries_of_steps_counted_since_are_dropped_not_sent(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    job_id = running_job(settings)
    first, second = store.claim_chapters(settings, job_id)
    store.finish_step(settings, job_id, first.step, result={})  # its message did go out after all
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 1, "dropped": 1}
    assert [message["id"] for message in queued(redis_client, settings)] == [second.task_id]


def test_two_copies_of_one_step_count_once(settings: Settings) -> None:
    job_id = running_job(settings, chapters=3, parallel=3)
    [first, *_] = store.claim_chapters(settings, job_id)
    assert [store.admit_step(settings, job_id, first.step, first.task_id) for _ in range(2)] == [store.RUN] * 2
    assert store.finish_step(settings, job_id, first.step, result={"copy": 1}) is not None
    assert store.finish_step(settings, job_id, first.step, result={"copy": 2}) is None
    assert store.admit_step(settings, job_id, first.step, first.task_id) == store.DROP  # a late copy
    job = store.get_job(settings, job_id)
    assert (job.current, job.chapters_done, job.in_flight) == (2, 1, 2)
    assert store.step_results(settings, job_id)[first.step]["result"] == {"copy": 1}


def test_a_copy_held_by_a_pause_while_its_twin_runs_neither_frees_a_slot_twice_nor_comes_back(
    settings: Settings,
) -> None:
    """Two copies under one id: one runs, then the job is paused and the other is held at its start."""
    job_id = running_job(settings, chapters=2, parallel=1)
    [first] = store.claim_chapters(settings, job_id)
    assert store.admit_step(settings, job_id, first.step, first.task_id) == store.RUN
    store.pause_job(settings, job_id)
    assert store.admit_step(settings, job_id, first.step, first.task_id) == store.HOLD
    store.finish_step(settings, job_id, first.step, result={})  # the running copy ends
    job = store.get_job(settings, job_id)
    assert (job.chapters_done, job.in_flight, job.held) == (1, 0, ())

    store.resume_job(settings, job_id)
    [second] = store.claim_chapters(settings, job_id)  # not chapter 1 again, and the window is not stuck
    assert second.step == "chapter:2"
    store.finish_step(settings, job_id, second.step, result={})
    job = store.get_job(settings, job_id)
    assert (job.chapters_done, job.in_flight, job.held) == (2, 0, ())


def test_the_outbox_ages_out_with_a_cancelled_job_and_goes_with_a_finished_one(
    settings: Settings, redis_client: redis.Redis
) -> None:
    cancelled, finished = running_job(settings), running_job(settings)
    for job_id in (cancelled, finished):
        store.claim_chapters(settings, job_id)
    assert redis_client.ttl(store.outbox_key(settings, cancelled)) == -1
    store.cancel_job(settings, cancelled)
    assert 0 < redis_client.ttl(store.outbox_key(settings, cancelled)) <= store.JOB_RETENTION_SECONDS
    store.finish_job(settings, finished, JobState.FAILED, "gave up")
    assert not redis_client.exists(store.outbox_key(settings, finished))


def test_beat_runs_the_sweep_on_the_monitoring_queue_at_the_configured_interval(celery_app: Celery) -> None:
    defaults = settings_from_env({})
    assert (defaults.job_sweep_interval, defaults.job_sweep_age) == (30, 30)
    settings = settings_from_env({"BOOKGEN_JOB_SWEEP_INTERVAL": "12", "BOOKGEN_JOB_SWEEP_AGE": "45"})
    assert settings.job_sweep_age == 45
    entry = beat_schedule(settings)["bookgen-job-sweep"]
    assert (entry["task"], entry["schedule"], entry["options"]["queue"]) == ("bookgen.job.sweep", 12, MONITORING)
    assert beat_schedule(defaults)["bookgen-job-sweep"]["schedule"] == 30
    # Sent by name without a queue, it still goes to the monitoring pool, not with the other job.* tasks.
    assert queue_for_task("bookgen.job.sweep") == MONITORING
    assert celery_app.amqp.router.route({}, "bookgen.job.sweep")["queue"].name == MONITORING
    assert celery_app.amqp.router.route({}, "bookgen.job.advance")["queue"].name == "high_priority"


@pytest.mark.parametrize(
    ("env", "message"),
    [({"BOOKGEN_JOB_SWEEP_INTERVAL": "0"}, "BOOKGEN_JOB_SWEEP_INTERVAL must be above 0"),
     ({"BOOKGEN_JOB_SWEEP_AGE": "-1"}, "BOOKGEN_JOB_SWEEP_AGE cannot be negative")],
)
def test_bad_sweep_settings_are_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_an_outbox_entry_keeps_whether_it_carries_callbacks_and_old_entries_still_read(settings: Settings) -> None:
    kick = StepMessage("start", store.START_TASK, ("job",), "id-1", 5, 1.5, callbacks=False)
    assert StepMessage.from_json(kick.to_json()) == kick
    old = json.dumps({"step": "chapter:1", "task": "bookgen.generate_chapter", "args": ["Ada", 1, None, 50],
                      "task_id": "id-2", "priority": 5, "at": 1.5})
    assert StepMessage.from_json(old).callbacks is True


def test_a_start_its_client_never_sent_is_sent_once_by_the_sweep_and_a_fresh_one_is_left_alone(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = submitted_by_a_dying_client(settings, monkeypatch)
    assert store.get_job(settings, job_id).state == JobState.PENDING
    [start] = outbox.entries(settings, job_id)
    assert (start.step, start.task, start.args, start.callbacks) == ("start", store.START_TASK, (job_id,), False)
    assert store.queued_tasks(settings, job_id) == {"start": start.task_id}  # what a cancel would revoke
    assert kicks(redis_client, settings) == []

    assert outbox.sweep(celery_app, settings) == {"resent": 0, "dropped": 0}
    assert outbox.entries(settings, job_id) == [start]
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 1, "dropped": 0}
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 0}
    assert kicks(redis_client, settings) == [
        {"id": start.task_id, "task": store.START_TASK, "args": [job_id], "link": [], "link_error": []}]
    assert outbox.entries(settings, job_id) == []


def test_a_start_entry_is_dropped_once_the_start_task_took_the_job_from_pending(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client died after sending: the start ran, and its entry is all that is left."""
    job_id = submitted_by_a_dying_client(settings, monkeypatch)
    play_the_start_task(settings, redis_client, job_id)
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 1}
    assert kicks(redis_client, settings) == []
    assert outbox.entries(settings, job_id) == []


def test_a_job_not_running_yet_gets_only_its_start_sent(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = submitted_by_a_dying_client(settings, monkeypatch)
    [start] = outbox.entries(settings, job_id)
    # A step recorded like claim_chapters records it, for a job that is not RUNNING: never sent.
    [chapter] = store._messages(store.get_job(settings, job_id), {"chapter:1": ("bookgen.generate_chapter", ())})
    pipe = redis_client.pipeline(transaction=True)
    store._register(pipe, settings, job_id, [chapter])
    pipe.execute()

    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 1, "dropped": 0}
    assert [message["id"] for message in kicks(redis_client, settings)] == [start.task_id]
    play_the_start_task(settings, redis_client, job_id)  # VALIDATING
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 0}
    assert queued(redis_client, settings) == []
    assert outbox.entries(settings, job_id) == [chapter]


def test_an_advance_its_client_never_sent_on_resume_is_sent_once_by_the_sweep(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = running_job(settings)
    redis_client.delete(*priority_list_keys(HIGH_PRIORITY, settings.priority_steps, settings.priority_separator))
    store.pause_job(settings, job_id)
    advance = resumed_by_a_dying_client(settings, monkeypatch, job_id)
    assert store.get_job(settings, job_id).state == JobState.RUNNING
    assert (advance.step, advance.task, advance.args, advance.callbacks) == (
        "advance", store.ADVANCE_TASK, (job_id,), False)
    assert store.queued_tasks(settings, job_id)["advance"] == advance.task_id
    assert kicks(redis_client, settings) == []

    assert outbox.sweep(celery_app, settings) == {"resent": 0, "dropped": 0}
    assert outbox.entries(settings, job_id) == [advance]
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 1, "dropped": 0}
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 0}
    assert kicks(redis_client, settings) == [
        {"id": advance.task_id, "task": store.ADVANCE_TASK, "args": [job_id], "link": [], "link_error": []}]


def test_an_advance_entry_is_kept_through_a_pause_and_dropped_once_an_advance_ran_or_replaced_it(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = running_job(settings)
    store.pause_job(settings, job_id)
    first = resumed_by_a_dying_client(settings, monkeypatch, job_id)
    store.pause_job(settings, job_id)
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 0}
    assert outbox.entries(settings, job_id) == [first]

    store.resume_job(settings, job_id)  # a client that lives: its advance is sent, under a new id
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 1}

    store.pause_job(settings, job_id)
    resumed_by_a_dying_client(settings, monkeypatch, job_id)
    redis_client.hdel(store.tasks_key(settings, job_id), "advance")  # what job.advance does first
    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 0, "dropped": 1}
    assert outbox.entries(settings, job_id) == []
    # Only what the living clients sent: submit's start and the second resume's advance.
    assert [m["task"] for m in kicks(redis_client, settings)] == [store.ADVANCE_TASK, store.START_TASK]


def test_a_job_paused_while_validating_and_resumed_by_a_dying_client_gets_its_new_start_from_the_sweep(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start counted the step "start" before the pause stopped it; the second must still go."""
    job_id = store.submit_job(settings, "Ada Lovelace", 4, 50, "md")
    play_the_start_task(settings, redis_client, job_id)
    store.finish_step(settings, job_id, "start", result={"valid": True})
    store.pause_job(settings, job_id)
    assert store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.RUNNING) is None
    start = resumed_by_a_dying_client(settings, monkeypatch, job_id)
    assert (store.get_job(settings, job_id).state, start.step, start.task) == (
        JobState.PENDING, "start", store.START_TASK)

    assert outbox.sweep(celery_app, overdue(settings)) == {"resent": 1, "dropped": 0}
    sent = [m["id"] for m in kicks(redis_client, settings)]  # submit's start, then this one
    assert len(sent) == 2 and start.task_id in sent
