"""The offline generator (deterministic, close to the target) and the OpenAI-compatible backend
against a real local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bookgen_worker.config import ConfigError, Settings
from bookgen_worker.content import validation
from bookgen_worker.content.generators import (
    OfflineGenerator,
    TextRequest,
    get_generator,
    rewrite_chapter,
    write_chapter,
    write_section,
)
from bookgen_worker.content.llm import OpenAIGenerator, split_sources
from bookgen_worker.errors import InvalidInput, PermanentError, TransientError
from hypothesis import given, settings
from hypothesis import strategies as st

OFFLINE = OfflineGenerator()


def test_same_request_gives_the_same_chapter_and_other_feedback_another() -> None:
    first = write_chapter(OFFLINE, "Ada Lovelace", 2, None, 800)
    again = write_chapter(OFFLINE, "Ada Lovelace", 2, None, 800)
    revised = write_chapter(OFFLINE, "Ada Lovelace", 2, None, 800, feedback="more on her mathematics")
    other_chapter = write_chapter(OFFLINE, "Ada Lovelace", 3, None, 800)
    assert first == again
    assert revised["text"] != first["text"]
    assert other_chapter["text"] != first["text"]


@pytest.mark.parametrize("target", [60, 200, 500, 1500, 4000])
def test_chapter_is_within_ten_percent_of_the_target(target: int) -> None:
    chapter = write_chapter(OFFLINE, "Grace Hopper", 1, None, target)
    assert abs(chapter["word_count"] - target) <= 0.1 * target
    assert chapter["word_count"] == len(chapter["text"].split())


def test_chapter_is_readable_prose_with_paragraphs_and_well_formed_sources() -> None:
    chapter = write_chapter(OFFLINE, "Marie Curie", 4, "Paris", 1500)
    assert chapter["number"] == 4 and chapter["title"] == "Paris"
    assert chapter["text"].count("\n\n") >= 3
    assert validation.content_quality(chapter["text"])["valid"]
    assert validation.sources(chapter["sources"])["valid"]


def test_sections_and_default_titles() -> None:
    intro = write_section(OFFLINE, "introduction", "Marie Curie", ["Warsaw", "Paris"], 300)
    outro = write_section(OFFLINE, "conclusion", "Marie Curie", ["Warsaw", "Paris"], 300)
    assert intro["title"] == "Introduction" and outro["title"] == "Conclusion"
    assert "Marie Curie" in intro["text"] and intro["text"] != outro["text"]
    assert abs(intro["word_count"] - 300) <= 30
    assert write_chapter(OFFLINE, "X Y", 1)["title"] == "Origins and Early Years"
    assert write_chapter(OFFLINE, "X Y", 12, None, 100)["title"].startswith("Further Episodes")


def test_regenerate_keeps_number_title_and_length() -> None:
    chapter = write_chapter(OFFLINE, "Alan Turing", 3, "Bletchley", 600)
    revised = rewrite_chapter(OFFLINE, chapter, "less about the war", "Alan Turing")
    assert (revised["number"], revised["title"]) == (3, "Bletchley")
    assert revised["text"] != chapter["text"]
    assert abs(revised["word_count"] - chapter["word_count"]) <= 60


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: write_chapter(OFFLINE, "  ", 1), "subject"),
        (lambda: write_chapter(OFFLINE, "Ada", 0), "chapter_number"),
        (lambda: write_chapter(OFFLINE, "Ada", 1, None, -5), "target_words"),
        (lambda: write_chapter(OFFLINE, "Ada", 1, None, 0), "target_words"),
        (lambda: write_section(OFFLINE, "introduction", "Ada", "not a list", 100), "chapter_titles"),
        (lambda: rewrite_chapter(OFFLINE, {"title": "x"}, "shorter", "Ada"), "chapter.number"),
        (lambda: rewrite_chapter(OFFLINE, {"number": 1}, "", "Ada"), "feedback"),
    ],
)
def test_bad_input_names_the_field(call: Callable[[], Any], field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        call()


def test_generator_selection() -> None:
    assert isinstance(get_generator(Settings()), OfflineGenerator)
    configured = Settings(generator="openai", llm_base_url="http://x/v1", llm_model="m", llm_api_key="sk-zzz")
    openai = get_generator(configured)
    assert isinstance(openai, OpenAIGenerator)
    assert "sk-zzz" not in repr(openai) and "sk-zzz" not in repr(configured)
    with pytest.raises(ConfigError, match="BOOKGEN_GENERATOR"):
        get_generator(Settings(generator="magic"))
    with pytest.raises(ConfigError, match="BOOKGEN_LLM_BASE_URL"):
        get_generator(Settings(generator="openai"))


def test_offline_pace_stands_in_for_model_latency_without_changing_the_text() -> None:
    paced = get_generator(Settings(offline_seconds=0.3))
    started = time.monotonic()
    chapter = write_chapter(paced, "Ada Lovelace", 2, None, 300)
    assert time.monotonic() - started >= 0.3
    assert chapter == write_chapter(OFFLINE, "Ada Lovelace", 2, None, 300)


# --- the HTTP backend, against a real local server -------------------------------------------------

SECRET = "sk-test-secret-123"


class FakeLLM(BaseHTTPRequestHandler):
    replies: list[tuple[int, str]] = []
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeLLM.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, payload = FakeLLM.replies.pop(0)
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def llm() -> Iterator[OpenAIGenerator]:
    FakeLLM.replies, FakeLLM.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OpenAIGenerator(f"http://127.0.0.1:{server.server_address[1]}/v1", "test-model", SECRET, timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def completion(content: str) -> str:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})


REQUEST = TextRequest(subject="Ada Lovelace", kind="chapter", title="Numbers", target_words=50, chapter_number=1)


def test_llm_success_parses_text_and_sources(llm: OpenAIGenerator) -> None:
    FakeLLM.replies = [(200, completion("Ada wrote notes.\n\nShe saw far ahead.\n\nSOURCES:\n"
                                        "- B. Woolley, The Bride of Science (1999). Macmillan"))]
    draft = llm.write(REQUEST)
    assert draft.text == "Ada wrote notes.\n\nShe saw far ahead."
    assert draft.sources == ("B. Woolley, The Bride of Science (1999). Macmillan",)
    request = FakeLLM.seen[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == f"Bearer {SECRET}"
    assert request["body"]["model"] == "test-model"
    assert "Ada Lovelace" in request["body"]["messages"][-1]["content"]


def test_llm_server_error_is_transient(llm: OpenAIGenerator) -> None:
    FakeLLM.replies = [(500, "upstream exploded")]
    with pytest.raises(TransientError, match="HTTP 500"):
        llm.write(REQUEST)
    FakeLLM.replies = [(429, "slow down")]
    with pytest.raises(TransientError, match="HTTP 429"):
        llm.write(REQUEST)


def test_llm_auth_error_is_permanent_and_does_not_leak_the_key(llm: OpenAIGenerator) -> None:
    FakeLLM.replies = [(401, json.dumps({"error": f"bad key {SECRET}"}))]
    with pytest.raises(PermanentError, match="HTTP 401") as caught:
        llm.write(REQUEST)
    assert SECRET not in str(caught.value)
    FakeLLM.replies = [(400, f"model missing, key {SECRET}")]
    with pytest.raises(PermanentError, match="HTTP 400") as caught:
        llm.write(REQUEST)
    assert SECRET not in str(caught.value)


def test_llm_malformed_body_is_a_clear_error(llm: OpenAIGenerator) -> None:
    FakeLLM.replies = [(200, "<html>gateway</html>")]
    with pytest.raises(TransientError, match="malformed response"):
        llm.write(REQUEST)
    FakeLLM.replies = [(200, json.dumps({"choices": []}))]
    with pytest.raises(TransientError, match="malformed response"):
        llm.write(REQUEST)


def test_llm_unreachable_is_transient() -> None:
    generator = OpenAIGenerator("http://127.0.0.1:9/v1", "m", SECRET, timeout=2)
    with pytest.raises(TransientError, match=r"could not reach|did not answer") as caught:
        generator.write(REQUEST)
    assert SECRET not in str(caught.value)


def test_split_sources_without_a_sources_block() -> None:
    assert split_sources("Just prose.\n").sources == ()
    assert split_sources("Text\n**Sources:**\n1. A, B (2000). C").sources == ("A, B (2000). C",)


# --- properties and the task layer ----------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(subject=st.text(min_size=1, max_size=80).filter(lambda s: s.strip()), target=st.integers(60, 3000),
       number=st.integers(1, 50))
def test_any_subject_gives_a_deterministic_chapter_near_the_target(subject: str, target: int, number: int) -> None:
    chapter = write_chapter(OFFLINE, subject, number, None, target)
    assert abs(chapter["word_count"] - target) <= 0.1 * target
    assert chapter == write_chapter(OFFLINE, subject, number, None, target)
    assert validation.sources(chapter["sources"])["valid"]


def test_tasks_turn_a_bad_generator_setting_into_a_permanent_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bookgen_worker.app import app
    from bookgen_worker.tasks import generation

    monkeypatch.setattr(app, "bookgen_settings", Settings(generator="magic"))
    with pytest.raises(PermanentError, match="BOOKGEN_GENERATOR"):
        generation.generate_chapter("Ada Lovelace", 1)


def test_batch_checks_everything_before_sending_anything() -> None:
    from bookgen_worker.tasks import generation

    with pytest.raises(InvalidInput, match="titles has 1 entries but chapter_count is 2"):
        generation.batch_generate_chapters("Ada Lovelace", 2, 500, ["Only one"])
    with pytest.raises(InvalidInput, match="chapter_count"):
        generation.batch_generate_chapters("Ada Lovelace", 0)
    with pytest.raises(InvalidInput, match="chapter_count must be at most"):
        generation.batch_generate_chapters("Ada Lovelace", 10_000)
