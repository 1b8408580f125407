"""PrometheusSource against a local HTTP server serving recorded Prometheus API responses (acceptance 3).

Each scenario is a real HTTP exchange (httpx -> http.server in a thread); the resulting observation
goes through the real decision core, and the decision must be the right one: the full target on a
good answer, and the fallback (or holding) — never a scale-in to zero — on empty, NaN, error, slow.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bookgen_operator.core.autoscaler.decide import decide
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Observation
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.autoscaler.rates import Totals
from bookgen_operator.core.autoscaler.source import PoolMetrics
from bookgen_operator.sources.prometheus import PrometheusSource, parse_response, pool_queries

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]


CONTENT = Pool("content", ("content_generation", "high_priority"))


def vector(value: str, ts: float = NOW) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [ts, value]}]}}


EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}
#: Recorded from a real Prometheus 2.x answering a query with a parse error.
BAD_DATA = {"status": "error", "errorType": "bad_data",
            "error": 'invalid parameter "query": 1:5: parse error: unexpected "}"'}


def success(query: str) -> tuple[int, Any]:
    if query.startswith("min(timestamp("):
        return 200, vector(str(NOW - 2))
    if "bookgen_queue_pending" in query:
        return 200, vector("57")
    if "bookgen_queue_in_flight" in query:
        return 200, vector("4")
    if "oldest_pending_age" in query:
        return 200, vector("12.5")
    if "bookgen_tasks_sent_total" in query:
        return 200, vector("120")
    if "bookgen_task_runtime_seconds_count" in query:
        return 200, vector("100")
    if "bookgen_task_runtime_seconds_sum" in query:
        return 200, vector("2500")
    return 200, vector("3")  # busy slots


@dataclass
class FakePrometheus:
    scenario: str = "success"
    queries: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, query: str) -> tuple[int, Any]:
        self.queries.append(query)
        if self.scenario == "success":
            return success(query)
        if self.scenario == "empty":
            return 200, EMPTY
        if self.scenario == "nan":
            return (200, vector("NaN")) if "timestamp" not in query else success(query)
        if self.scenario == "error":
            return 400, BAD_DATA
        if self.scenario == "unavailable":
            return 503, "Service Unavailable"
        if self.scenario == "stale":  # values fine, but the newest scrape is 2 minutes old
            return (200, vector(str(NOW - 120))) if query.startswith("min(timestamp(") else success(query)
        if self.scenario == "slow":
            self.release.wait(5)  # longer than the source's timeout; released at teardown
            return success(query)
        raise AssertionError(self.scenario)


@pytest.fixture
def prometheus() -> Iterator[tuple[FakePrometheus, str]]:
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            assert url.path == "/api/v1/query"
            query = urllib.parse.parse_qs(url.query)["query"][0]
            code, body = fake.answer(query)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout scenario)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()


async def observe(url: str, timeout: float = 5.0) -> PoolMetrics | None:
    """`timeout` is generous where the fake answers (a loaded CI machine is slow, not broken) and short
    only where the test is about a Prometheus that never answers."""
    source = PrometheusSource(url, {"namespace": "books"}, timeout=timeout, clock=lambda: NOW)
    try:
        return (await source.observe([CONTENT]))["content"]
    finally:
        await source.close()


def decision(metrics: PoolMetrics | None, policy: Policy, current: int = 2, busy: int = 1) -> int:
    obs = Observation("content", metrics.pending if metrics else None, metrics.in_flight if metrics else None,
                      metrics.oldest_age if metrics else None, current, busy, 1,
                      metrics.observed_at if metrics else NOW)
    return decide(obs, policy, History(), NOW).desired


POLICY = Policy(target_per_slot=10, max_replicas=20, stale_after=30)
WITH_FALLBACK = Policy(target_per_slot=10, max_replicas=20, stale_after=30, fallback_replicas=5)


async def test_a_good_answer_gives_the_full_target(prometheus: tuple[FakePrometheus, str]) -> None:
    fake, url = prometheus
    metrics = await observe(url)
    assert metrics == PoolMetrics(pending=57, in_flight=4, oldest_age=12.5, busy_slots=3, observed_at=NOW - 2,
                                  totals=Totals(sent=120, finished=100, runtime_sum=2500))
    assert decision(metrics, POLICY) == 7  # ceil(61 / 10)
    # Every query selects the namespace and exactly the pool's queues.
    assert all('namespace="books"' in q for q in fake.queries)
    assert 'sum(max by (queue) (bookgen_queue_pending{namespace="books",queue=~"content_generation|high_priority"}))' \
        in fake.queries
    assert any('pool="content"' in q for q in fake.queries)


@pytest.mark.parametrize("scenario", ["empty", "nan", "error", "unavailable", "slow"])
async def test_unknown_answers_are_never_read_as_zero(prometheus: tuple[FakePrometheus, str], scenario: str) -> None:
    fake, url = prometheus
    fake.scenario = scenario
    started = time.monotonic()
    metrics = await observe(url, timeout=0.3)
    assert metrics is None
    assert time.monotonic() - started < 3, "a slow Prometheus must not stall the loop beyond the timeout"
    assert decision(metrics, POLICY, current=6) == 6  # hold, not 0 or min
    assert decision(metrics, WITH_FALLBACK, current=2) == 5  # the configured fallback
    assert decision(metrics, WITH_FALLBACK, current=9, busy=7) == 7  # never below busy workers


async def test_an_old_scrape_counts_as_stale(prometheus: tuple[FakePrometheus, str]) -> None:
    fake, url = prometheus
    fake.scenario = "stale"
    metrics = await observe(url)
    assert metrics is not None and metrics.observed_at == NOW - 120
    assert decision(metrics, WITH_FALLBACK, current=2) == 5
    assert decision(metrics, POLICY, current=2) == 2


def test_the_envelope_parser() -> None:
    assert parse_response(vector("1e3")) == 1000.0
    assert parse_response({"status": "success", "data": {"resultType": "scalar", "result": [NOW, "2"]}}) == 2.0
    assert parse_response(vector("+Inf")) is None
    assert parse_response(EMPTY) is None
    assert parse_response(BAD_DATA) is None
    assert parse_response({"status": "success", "data": {"resultType": "matrix", "result": []}}) is None
    assert parse_response(["not", "an", "envelope"]) is None


def test_label_values_and_queue_names_are_escaped() -> None:
    queries = pool_queries(Pool("p", ("a.b", "c|d")), {"namespace": 'we"ird'})
    assert 'namespace="we\\"ird"' in queries["pending"]
    assert 'queue=~"a\\\\.b|c\\\\|d"' in queries["pending"]
