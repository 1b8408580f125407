"""The API key of the OpenAI-compatible backend never leaves the Authorization header: not in an
error's message, not in its traceback (what Celery logs for a failed task), not in any log record of
httpx or httpcore at DEBUG, whatever the server answers or however the call fails."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bookgen_worker.content.drafts import TextRequest
from bookgen_worker.content.llm import OpenAIGenerator

KEY = "sk-secrecy-7f3a9c"
REQUEST = TextRequest(subject="Ada Lovelace", kind="chapter", title="Numbers", target_words=50, chapter_number=1)


class Echo(BaseHTTPRequestHandler):
    """Answers with what the test asks, echoing the Authorization header back (as a careless proxy might)."""

    answer: tuple[int, str] = (200, "")
    delay = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(Echo.delay)
        status, body = Echo.answer
        data = body.replace("{auth}", self.headers.get("Authorization", "")).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Echo.answer, Echo.delay = (200, ""), 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("answer", [
    (401, '{"error": "invalid key {auth}"}'),
    (403, "{auth}"),
    (400, '{"error": "bad request from {auth}"}'),
    (429, "slow down, {auth}"),
    (500, "<html>{auth}</html>"),
    (200, "<html>not json {auth}</html>"),
    (200, json.dumps({"choices": [{"message": {"content": None}}], "echo": "{auth}"})),
])  # fmt: skip
def test_no_answer_of_the_server_puts_the_key_in_an_error_or_a_log(
    server: str, answer: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    Echo.answer = answer
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as caught:
        OpenAIGenerator(server, "m", KEY, timeout=5).write(REQUEST)
    assert KEY not in "".join(traceback.format_exception(caught.value))
    assert KEY not in caplog.text


@pytest.mark.parametrize("how", ["unreachable", "timeout"])
def test_a_failed_call_puts_the_key_in_no_error_and_no_log(
    server: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = "http://127.0.0.1:9/v1" if how == "unreachable" else server
    Echo.delay = 3.0
    with pytest.raises(Exception) as caught:
        OpenAIGenerator(url, "m", KEY, timeout=1).write(REQUEST)
    assert KEY not in "".join(traceback.format_exception(caught.value))
    assert KEY not in caplog.text
