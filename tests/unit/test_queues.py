from __future__ import annotations

import pytest
from bookgen_worker.queues import (
    ALL_TASKS,
    DEFAULT_POOLS,
    QUEUES,
    PriorityError,
    priority_list_keys,
    priority_step,
    queue_for_task,
    transport_priority,
)


def test_the_original_topology() -> None:
    assert len(QUEUES) == 6
    assert len(ALL_TASKS) == 18
    assert {p.name: (p.queues, p.concurrency) for p in DEFAULT_POOLS} == {
        "content": (("content_generation", "high_priority"), 2),
        "validation": (("validation",), 2),
        "export": (("export",), 1),
        "monitoring": (("monitoring",), 1),
    }


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("bookgen.generate_chapter", "content_generation"),
        ("bookgen.validate_sources", "validation"),
        ("bookgen.export_to_pdf", "export"),
        ("bookgen.health_check", "monitoring"),
        ("bookgen.job.finalize", "high_priority"),
        ("something.else", "default"),
    ],
)
def test_routing_by_task_name(task: str, queue: str) -> None:
    assert queue_for_task(task) == queue


def test_public_priority_is_reversed_onto_the_redis_transport() -> None:
    steps = (0, 3, 6, 9)
    # 10 is the most urgent publicly and must land in the list kombu serves first (step 0).
    assert priority_step(transport_priority(10), steps) == 0
    assert priority_step(transport_priority(0), steps) == 9
    served_order = [priority_step(transport_priority(p), steps) for p in range(10, -1, -1)]
    assert served_order == sorted(served_order), "more urgent must never be served later"


def test_with_the_default_steps_every_public_level_is_its_own_list_but_0_and_1() -> None:
    from bookgen_worker.config import DEFAULT_PRIORITY_STEPS

    lists = {p: priority_step(transport_priority(p), DEFAULT_PRIORITY_STEPS) for p in range(11)}
    assert len(set(lists.values())) == 10
    assert lists[1] == lists[0] == 9  # the one tie, documented
    assert [lists[p] for p in range(10, 0, -1)] == list(range(10))


@pytest.mark.parametrize("bad", [-1, 11, 2.5, "7", True])
def test_priority_out_of_range_is_rejected(bad: object) -> None:
    with pytest.raises(PriorityError, match="0 to 10"):
        transport_priority(bad)  # type: ignore[arg-type]


def test_priority_list_keys_follow_kombu_naming() -> None:
    assert priority_list_keys("export", (0, 3, 6, 9), "\x06\x16", "pfx:") == [
        "pfx:export", "pfx:export\x06\x163", "pfx:export\x06\x166", "pfx:export\x06\x169",
    ]


def test_a_worker_polls_high_priority_first_whatever_order_it_was_given() -> None:
    from bookgen_worker.queues import consumption_order

    assert consumption_order(["content_generation", "high_priority"]) == ["high_priority", "content_generation"]
    assert consumption_order(["validation", "export"]) == ["validation", "export"]
    assert consumption_order(["a", "high_priority", "b"]) == ["high_priority", "a", "b"]


def test_coordination_tasks_are_the_job_steps_but_not_the_sweep() -> None:
    from bookgen_worker.queues import JOB_SWEEP_TASK, is_coordination_task

    assert is_coordination_task("bookgen.job.step_done")
    assert not is_coordination_task(JOB_SWEEP_TASK)
    assert not is_coordination_task("bookgen.generate_chapter")
