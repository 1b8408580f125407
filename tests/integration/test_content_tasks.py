"""The content tasks through real `celery worker` processes, each pool on its own queue:
a batch of chapters fans out, the book validates, every format exports in parallel, and a hostile
subject still writes inside the output folder (acceptance 7)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import docx
import pypdf
import pytest
import redis
from bookgen_worker import deadletter
from bookgen_worker.app import bookgen_settings
from bookgen_worker.queues import CONTENT_GENERATION, EXPORT, VALIDATION
from bookgen_worker.tasks import export, generation, validation
from celery import Celery
from celery.result import AsyncResult, GroupResult

from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, running_worker

TIMEOUT = 60


def ran_on(worker: WorkerProcess, task_id: str) -> bool:
    """The worker logged the task's success (the log line follows the stored result, so wait for it)."""
    wait_for(lambda: f"[{task_id}] succeeded" in worker.log(), timeout=10, what=f"{task_id} in {worker.name}'s log")
    return True


def test_generate_validate_and_export_a_book_through_real_workers(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    output = workdir / "output"
    with ExitStack() as stack:
        workers = {
            queue: stack.enter_context(running_worker(
                redis_url=celery_app.conf.broker_url, queues=[queue], name=queue, workdir=workdir,
                concurrency=2, extra_env={"BOOKGEN_OUTPUT_DIR": str(output)},
            ))
            for queue in (CONTENT_GENERATION, VALIDATION, EXPORT)
        }

        batch = generation.batch_generate_chapters.submit("Ada Lovelace", 3, 200, priority=7)
        fanned = batch.get(timeout=TIMEOUT)
        assert len(fanned["task_ids"]) == 3
        group = GroupResult.restore(fanned["group_id"], app=celery_app)
        assert [child.id for child in group.results] == fanned["task_ids"]
        chapters = group.get(timeout=TIMEOUT)
        assert [chapter["number"] for chapter in chapters] == [1, 2, 3]
        assert all(abs(chapter["word_count"] - 200) <= 20 for chapter in chapters)
        assert all(ran_on(workers[CONTENT_GENERATION], task_id) for task_id in fanned["task_ids"])

        titles = [chapter["title"] for chapter in chapters]
        intro = generation.generate_introduction.submit("Ada Lovelace", titles, 120)
        outro = generation.generate_conclusion.submit("Ada Lovelace", titles, 120)
        sources = list(dict.fromkeys(source for chapter in chapters for source in chapter["sources"]))
        biography = {"subject": "../../etc/passwd", "introduction": intro.get(timeout=TIMEOUT),
                     "chapters": chapters, "conclusion": outro.get(timeout=TIMEOUT), "sources": sources}

        check = validation.validate_complete_biography.submit(biography, 200)
        assert check.get(timeout=TIMEOUT)["valid"], check.result
        assert ran_on(workers[VALIDATION], check.id)

        sent = export.export_all_formats.submit(biography).get(timeout=TIMEOUT)
        exported = [AsyncResult(task_id, app=celery_app).get(timeout=TIMEOUT) for task_id in sent["task_ids"]]
        assert all(ran_on(workers[EXPORT], task_id) for task_id in sent["task_ids"])

    # Acceptance 7: the hostile subject became a plain name inside the output folder.
    assert {entry["format"] for entry in exported} == {"markdown", "docx", "pdf"}
    for entry in exported:
        assert Path(entry["path"]).parent == output.resolve()
    assert sorted(path.name for path in output.iterdir()) == ["etc_passwd.docx", "etc_passwd.md", "etc_passwd.pdf"]
    assert not (workdir.parent / "etc").exists() and not (workdir / "etc").exists()
    headings = [p.text for p in docx.Document(output / "etc_passwd.docx").paragraphs if p.style.name == "Heading 1"]
    assert headings == ["Introduction", *(f"Chapter {n}: {t}" for n, t in enumerate(titles, 1)), "Conclusion",
                        "Sources"]
    assert "Page 2" in pypdf.PdfReader(output / "etc_passwd.pdf").pages[1].extract_text()


def test_bad_input_fails_at_once_and_is_dead_lettered_with_its_reason(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    with running_worker(redis_url=celery_app.conf.broker_url, queues=[CONTENT_GENERATION], name="content",
                        workdir=workdir):
        result = generation.generate_chapter.submit("Ada", 1, None, -5)
        with pytest.raises(Exception, match="target_words must be positive"):
            result.get(timeout=TIMEOUT)
        settings = bookgen_settings(celery_app)
        entry = wait_for(lambda: deadletter.get(settings, result.id), timeout=TIMEOUT, what="the dead letter")
    assert entry.exception_type == "InvalidInput"
    assert entry.attempts == 1  # a permanent error is not retried
    assert entry.queue == CONTENT_GENERATION
