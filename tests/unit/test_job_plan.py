"""Pure decisions of a book job: the assembled biography and how the job ends."""

from __future__ import annotations

from typing import Any

from bookgen_worker.jobs.plan import assemble, outcome, status_line
from bookgen_worker.jobs.records import STAGE_CHAPTERS, STAGE_EXPORTING, JobRecord
from bookgen_worker.jobs.states import JobState


def job(**fields: Any) -> JobRecord:
    base: dict[str, Any] = {
        "id": "j1", "state": JobState.RUNNING, "current": 0, "total": 9, "status": "", "subject": "Ada",
        "chapters": 3, "target_words": 10, "formats": ("markdown", "pdf"),
    }
    return JobRecord(**{**base, **fields})


def chapter(number: int, *sources: str) -> dict[str, Any]:
    return {"ok": True, "result": {"number": number, "title": f"T{number}", "text": "x", "word_count": 1,
                                   "sources": list(sources)}}


def exported(fmt: str) -> dict[str, Any]:
    return {"ok": True, "result": {"format": fmt, "path": f"/out/a.{fmt}", "bytes": 3}}


def test_the_biography_keeps_chapter_order_and_unique_sources_and_skips_failures() -> None:
    results = {
        "chapter:2": chapter(2, "B", "A"),
        "chapter:1": chapter(1, "A"),
        "chapter:3": {"ok": False, "result": None, "error": "boom"},
        "introduction": {"ok": True, "result": {"title": "Intro", "text": "i", "word_count": 1}},
    }
    biography = assemble(job(), results)
    assert [c["number"] for c in biography["chapters"]] == [1, 2]
    assert biography["sources"] == ["A", "B"]
    assert biography["introduction"]["title"] == "Intro"
    assert biography["conclusion"] == {"title": "Conclusion", "text": "", "word_count": 0}


def test_outcome_completed_with_errors_or_failed() -> None:
    all_files = {"export:markdown": exported("markdown"), "export:pdf": exported("pdf")}
    assert outcome(job(), all_files).state == JobState.COMPLETED
    assert outcome(job(errors=("chapter:2: boom",)), all_files).state == JobState.COMPLETED_WITH_ERRORS
    one_file = {**all_files, "export:pdf": {"ok": False, "result": None, "error": "x"}}
    end = outcome(job(errors=("export:pdf: x",)), one_file)
    assert (end.state, end.outputs) == (JobState.COMPLETED_WITH_ERRORS, {"markdown": "/out/a.markdown"})
    invalid = {**all_files, "validate": {"ok": True, "result": {"valid": False, "errors": ["no sources"]}}}
    assert outcome(job(), invalid).errors == ("validation: no sources",)
    assert outcome(job(), {}).state == JobState.FAILED


def test_status_lines_say_where_the_job_is() -> None:
    assert status_line(job(stage=STAGE_CHAPTERS, chapters_done=1, in_flight=2, chapters_failed=1)) == (
        "Writing chapters: 1/3 done, 2 in flight, 1 failed"
    )
    assert status_line(job(stage=STAGE_EXPORTING, current=8, total=9)) == "Exporting: 1/2 formats"


def test_each_file_is_recorded_with_its_location_size_and_sha256() -> None:
    results = {"export:markdown": {"ok": True, "result": {"format": "markdown", "path": "s3://b/k/a.md", "bytes": 3,
                                                          "sha256": "ab" * 32, "endpoint": "http://s3:7070"}},
               "export:pdf": exported("pdf")}
    end = outcome(job(), results)
    assert end.outputs == {"markdown": "s3://b/k/a.md", "pdf": "/out/a.pdf"}
    assert end.files == {
        "markdown": {"location": "s3://b/k/a.md", "bytes": 3, "sha256": "ab" * 32, "endpoint": "http://s3:7070"},
        "pdf": {"location": "/out/a.pdf", "bytes": 3, "sha256": None},  # an export task of an older version
    }


def test_a_retrying_step_is_in_the_status_line_and_the_record_round_trips() -> None:
    waiting = job(stage=STAGE_EXPORTING, current=7, total=9,
                  retrying={"export:pdf": "attempt 1 failed, retrying: SignatureDoesNotMatch"})
    assert status_line(waiting) == (
        "Exporting: 0/2 formats; export:pdf: attempt 1 failed, retrying: SignatureDoesNotMatch")
    both = job(stage=STAGE_EXPORTING, current=7, total=9, retrying={"export:pdf": "b", "export:markdown": "a"})
    assert status_line(both) == "Exporting: 0/2 formats; export:markdown: a (also failing: export:pdf)"
    done = job(files={"pdf": {"location": "/out/a.pdf", "bytes": 3, "sha256": "c" * 64}}, retrying={"x": "y"})
    assert JobRecord.from_hash("j1", done.to_hash()) == done
    assert JobRecord.from_hash("j1", {"state": "RUNNING"}).files == {}  # a record written before files existed
    assert done.as_dict()["files"] == {"pdf": {"location": "/out/a.pdf", "bytes": 3, "sha256": "c" * 64}}
