"""The job life cycle and the checks on a job request, as pure functions."""

from __future__ import annotations

import itertools

import pytest
from bookgen_worker.errors import InvalidInput
from bookgen_worker.jobs.records import JobRecord, parse_formats, total_steps, validate_inputs
from bookgen_worker.jobs.states import (
    TERMINAL,
    InvalidTransition,
    JobState,
    allowed,
    check_transition,
    resume_target,
)
from hypothesis import given
from hypothesis import strategies as st


def test_the_happy_path_is_allowed_step_by_step() -> None:
    path = [JobState.PENDING, JobState.VALIDATING, JobState.RUNNING, JobState.COMPLETED]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)


@given(st.sampled_from(sorted(TERMINAL)), st.sampled_from(list(JobState)))
def test_a_terminal_state_is_never_left(current: JobState, target: JobState) -> None:
    assert not allowed(current, target)
    with pytest.raises(InvalidTransition, match="already"):
        check_transition(current, target)


def test_pause_resume_and_cancel() -> None:
    for state in (JobState.PENDING, JobState.VALIDATING, JobState.RUNNING):
        check_transition(state, JobState.PAUSED)
        check_transition(state, JobState.CANCELLED)
    check_transition(JobState.PAUSED, JobState.RUNNING)
    check_transition(JobState.PAUSED, JobState.CANCELLED)
    with pytest.raises(InvalidTransition, match="nothing to resume"):
        check_transition(JobState.RUNNING, JobState.RUNNING)
    with pytest.raises(InvalidTransition, match="can be paused"):
        check_transition(JobState.PAUSED, JobState.PAUSED)
    # A paused job cannot finish by itself: only resume or cancel move it on.
    assert not allowed(JobState.PAUSED, JobState.COMPLETED)


def test_a_job_paused_before_it_ran_is_validated_again_on_resume() -> None:
    assert resume_target("RUNNING") == JobState.RUNNING
    assert resume_target("VALIDATING") == JobState.PENDING
    assert resume_target("PENDING") == JobState.PENDING


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject": "  "}, "subject of the biography must not be empty"),
        ({"chapters": 0}, "chapters must be from 1 to 200"),
        ({"chapters": 10_000}, "chapters must be from 1 to 200"),
        ({"chapters": "3"}, "whole number"),
        ({"target_words": -5}, "cannot be negative"),
        ({"formats": "md,epub"}, "unknown export format 'epub'"),
        ({"formats": ""}, "at least one export format"),
        ({"priority": 11}, "priority must be from 0 to 10"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    request: dict[str, object] = {"subject": "Ada Lovelace", "chapters": 3, "target_words": 100, "formats": "md"}
    request.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        validate_inputs(**request)  # type: ignore[arg-type]


def test_formats_accept_common_spellings_once_each() -> None:
    assert parse_formats("md, DOCX,pdf,markdown") == ("markdown", "docx", "pdf")
    assert parse_formats(["word"]) == ("docx",)


def test_total_counts_chapters_fixed_steps_and_exports() -> None:
    assert total_steps(10, ("markdown", "docx", "pdf")) == 10 + 4 + 3


def test_a_record_survives_the_hash_encoding() -> None:
    record = JobRecord(
        id="abc", state=JobState.RUNNING, current=3, total=17, status="Writing", subject="Ada", chapters=10,
        target_words=100, formats=("markdown", "pdf"), outputs={"pdf": "/tmp/a.pdf"}, errors=("chapter:2: boom",),
        created_at=1.5, updated_at=2.25,
    )
    encoded = {key.encode(): value.encode() for key, value in record.to_hash().items()}
    assert JobRecord.from_hash("abc", encoded) == record
    assert record.error == "chapter:2: boom"
