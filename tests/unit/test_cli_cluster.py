"""`bookgen -n NS --queue NAME <command>` (issue 23): a queue on a cluster reached by its name, through
the kubeconfig, with no REDIS_URL. Here against tests/support/fake_apiserver.py (real HTTP, a real
WebSocket port-forward relayed to a real redis-server, the `kubernetes` client's own code); on the
real API server and kubelet in tests/cluster/test_real_node_clients.py.

Every misuse ends in one line on stderr, exit status 2, and never shows the password: no kubeconfig,
no current context, an unknown context, no such queue, no CRD, no right to read the queue or the
Secret or to port-forward, no key in the Secret, no ready Redis pod (the queue's Ready condition says
why), the Redis behind the port-forward refusing connections.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bookgen_operator.cli.cluster import QueueRef, open_queue, queue_redis
from bookgen_operator.cli.target import REDIS_ENV, STATE_DIR_ENV

from tests.support.fake_apiserver import FakeApiServer
from tests.support.redis_server import RedisServer, free_port
from tests.unit.test_cli_misuse import assert_one_line_error, run

NS, NAME = "writers", "books"
QUEUE_PATH = f"/apis/bookgen.io/v1alpha1/namespaces/{NS}/bookgenqueues/{NAME}"
SECRET_PATH = f"/api/v1/namespaces/{NS}/secrets/{NAME}-redis"
SERVICE_PATH = f"/api/v1/namespaces/{NS}/services/{NAME}-redis"
PODS_PATH = f"/api/v1/namespaces/{NS}/pods"
FORWARD_PATH = f"/api/v1/namespaces/{NS}/pods/{NAME}-redis-0/portforward"
READY = {"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "ready"}


def queue_body(redis: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None,
               env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"redis": redis or {"mode": "managed", "passwordSecretRef": {"name": "", "key": "password"}},
                     **({"env": env} if env else {})},
            "status": {"conditions": [READY] if conditions is None else conditions}}


def redis_pod(ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": f"{NAME}-redis-0", "namespace": NS},
            "spec": {"containers": [{"name": "redis", "ports": [{"name": "redis", "containerPort": 6379}]}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cluster(api: FakeApiServer, redis_server: RedisServer, redis_url: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> FakeApiServer:
    """A ready queue whose Redis (the test's redis-server) is reached through the fake API server; the
    shell has a kubeconfig and nothing else (no REDIS_URL, no state folder)."""
    for name in (*REDIS_ENV, STATE_DIR_ENV, "BOOKGEN_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
    api.objects[QUEUE_PATH] = queue_body()
    api.objects[SECRET_PATH] = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": f"{NAME}-redis"},
                                "data": {"password": base64.b64encode(redis_server.password.encode()).decode()}}
    api.objects[SERVICE_PATH] = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": f"{NAME}-redis"},
                                 "spec": {"selector": {"app.kubernetes.io/instance": NAME},
                                          "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]}}
    api.objects[PODS_PATH] = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [redis_pod()]}
    api.forwards[FORWARD_PATH] = ("127.0.0.1", redis_server.port)
    return api


def bookgen(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(["-n", NS, "--queue", NAME, *argv], capsys)


def test_submit_and_list_jobs_through_the_port_forward(cluster: FakeApiServer, redis_server: RedisServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = bookgen(capsys, "submit", "Ada Lovelace", "--chapters", "2", "-o", "json")
    assert code == 0, err
    job_id = json.loads(out)["id"]
    code, out, err = bookgen(capsys, "jobs", "-o", "json")
    assert code == 0, err
    assert [job["id"] for job in json.loads(out)] == [job_id]
    assert redis_server.password not in out + err
    assert any(p == FORWARD_PATH for p in cluster.requests), "the Redis was reached through the API server"
    # The options after the command too, kubectl's way.
    code, out, err = run(["jobs", "-o", "json", "-n", NS, "--queue", NAME], capsys)
    assert code == 0 and json.loads(out)[0]["id"] == job_id, err


def test_status_and_the_dead_letters_through_the_port_forward(cluster: FakeApiServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = bookgen(capsys, "status", "-o", "json", "--queue", "export")  # after status: a Celery queue
    assert code == 0, err
    assert list(json.loads(out)["queues"]) == ["export"]
    code, out, err = bookgen(capsys, "dlq", "list", "-o", "json")
    assert (code, json.loads(out)) == (0, []), err


def test_the_namespace_of_the_context_is_used_without_n(cluster: FakeApiServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "with-ns", namespace=NS)))
    code, out, err = run(["--queue", NAME, "jobs", "-o", "json"], capsys)
    assert (code, json.loads(out)) == (0, []), err


def test_the_queues_client_settings_are_used(cluster: FakeApiServer, redis_server: RedisServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A key prefix given to the queue's processes in spec.env is the one the CLI reads with."""
    cluster.objects[QUEUE_PATH] = queue_body(env=[{"name": "BOOKGEN_REDIS_KEYPREFIX", "value": "team-a:"}])
    code, out, err = bookgen(capsys, "submit", "Ada Lovelace", "--chapters", "1", "-o", "json")
    assert code == 0, err
    assert redis_server.client().exists(f"team-a:bookgen:job:{json.loads(out)['id']}")


def test_a_queue_not_ready_whose_redis_answers_is_used_with_a_note(cluster: FakeApiServer,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cluster.objects[QUEUE_PATH] = queue_body(conditions=[{"type": "Ready", "status": "False", "reason": "PoolsPending",
                                                          "message": "pool content: 0/1 ready"}])
    code, _out, err = bookgen(capsys, "jobs", "-o", "json")
    assert code == 0, err
    assert "note: queue writers/books: it is not Ready (PoolsPending: pool content: 0/1 ready)" in err


def test_open_queue_is_the_seam_other_commands_reuse(cluster: FakeApiServer, redis_server: RedisServer) -> None:
    import os

    import redis

    with open_queue(QueueRef(NAME, NS), os.environ) as queue:
        assert queue.kube.context == "fake" and queue.namespace == NS and queue.body["metadata"]["name"] == NAME
        assert queue.redis_url.startswith(f"redis://:{redis_server.password}@127.0.0.1:")
        clients = [redis.Redis.from_url(queue.redis_url) for _ in range(5)]  # one stream per connection
        assert all(c.ping() for c in clients)
        for c in clients:
            c.close()


def test_where_the_redis_of_a_queue_is() -> None:
    managed = queue_redis(queue_body())
    assert (managed.service, managed.secret, managed.key) == ("books-redis", "books-redis", "password")
    assert managed.url is None
    own = queue_redis(queue_body({"mode": "managed", "passwordSecretRef": {"name": "mine", "key": "pw"}}))
    assert (own.secret, own.key) == ("mine", "pw")
    external = queue_redis(queue_body({"mode": "external", "url": "rediss://redis.example.com:6380/2",
                                       "passwordSecretRef": {"name": "ext", "key": "password"}}))
    assert (external.service, external.url, external.secret) == (None, "rediss://redis.example.com:6380/2", "ext")
    in_cluster = queue_redis(queue_body({"mode": "external", "url": "redis://shared.infra.svc.cluster.local:6390/1",
                                         "passwordSecretRef": {"name": "ext"}}))
    assert (in_cluster.service, in_cluster.service_namespace, in_cluster.port) == ("shared", "infra", 6390)


# -- misuse ---------------------------------------------------------------------------------------


def forbidden(what: str) -> tuple[int, str]:
    return 403, (f'{what} is forbidden: User "tester" cannot get resource in API group "" in the namespace '
                 f'"{NS}"')


@pytest.mark.parametrize(("change", "expected"), [
    (lambda api: api.objects.update({QUEUE_PATH: (404, 'bookgenqueues.bookgen.io "books" not found')}),
     "no BookGenQueue books in namespace writers (context fake"),
    (lambda api: api.objects.update({QUEUE_PATH: forbidden('bookgenqueues.bookgen.io "books"')}),
     "context fake may not read BookGenQueues in namespace writers: bookgenqueues.bookgen.io \"books\" is forbidden"),
    (lambda api: api.objects.update({SECRET_PATH: forbidden('secrets "books-redis"')}),
     "context fake may not read Secret books-redis in namespace writers (the Redis password): secrets"),
    (lambda api: api.objects.pop(SECRET_PATH), "no Secret books-redis in namespace writers"),
    (lambda api: api.objects[SECRET_PATH].update({"data": {"other": "eA=="}}),
     "Secret books-redis in namespace writers has no key 'password'"),
    (lambda api: api.objects.update({QUEUE_PATH: queue_body(conditions=[
        {"type": "Ready", "status": "False", "reason": "RedisNotReady", "message": "waiting for the Redis pod"}]),
        PODS_PATH: {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [redis_pod(ready=False)]}}),
     "no ready pod behind Service books-redis in namespace writers (1 pod(s) selected, none ready); it is not "
     "Ready (RedisNotReady: waiting for the Redis pod)"),
    (lambda api: api.forwards.update({FORWARD_PATH: (403, "pods/portforward is forbidden")}),
     "the kubeconfig's user may not port-forward to pod books-redis-0 in namespace writers"),
    (lambda api: api.forwards.update({FORWARD_PATH: ("127.0.0.1", free_port())}), "cannot reach the Redis of queue "
     "writers/books (context fake), Redis through a port-forward to 127.0.0.1:"),
])
def test_each_misuse_is_one_line(cluster: FakeApiServer, capsys: pytest.CaptureFixture[str],
                                 redis_server: RedisServer, change: Any, expected: str) -> None:
    change(cluster)
    for argv in (["jobs"], ["status"], ["submit", "Ada"], ["dlq", "list"]):
        code, out, err = bookgen(capsys, *argv)
        assert_one_line_error(argv, code, out, err)
        assert expected in err, err
        assert redis_server.password not in out + err


def test_no_crd_on_the_cluster(cluster: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.objects.pop(QUEUE_PATH)
    code, out, err = bookgen(capsys, "jobs")
    assert_one_line_error(["jobs"], code, out, err)
    assert "has no BookGenQueue resource (is the operator's chart installed?)" in err


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--queue", NAME, "jobs"], {"KUBECONFIG": "/no/such/kubeconfig"},
     "no kubeconfig at /no/such/kubeconfig (KUBECONFIG)"),
    (["--kubeconfig", "/no/such/file", "--queue", NAME, "jobs"], {}, "no kubeconfig at /no/such/file (--kubeconfig)"),
    (["--queue", NAME, "--context", "prod", "jobs"], {}, "has no context 'prod' (it has: fake)"),
    (["-n", NS, "jobs"], {}, "--namespace: for a queue on a cluster, but no --queue NAME names one"),
    (["jobs", "--context", "fake"], {}, "--context: for a queue on a cluster, but no --queue NAME names one"),
    (["--queue", NAME, "--redis-url", "redis://x:1/0", "jobs"], {}, "--queue books names a queue on a cluster and "
     "--redis-url another system; give one"),
    (["--queue", NAME, "env"], {}, "a cluster queue's Redis is reached through a port-forward that lasts one command"),
    (["-n", NS, "render", "-f", "x.yaml"], {}, "`bookgen render` talks to none (its own -n goes after it"),
    (["status", "--queue", NAME], {}, "a BookGenQueue is named before it: bookgen --queue NAME status"),
])
def test_options_misused(cluster: FakeApiServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                         argv: list[str], env: dict[str, str], expected: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(argv, capsys)
    assert_one_line_error(argv, code, out, err)
    assert expected in err, err


def test_no_kubeconfig_anywhere(cluster: FakeApiServer, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out, err = bookgen(capsys, "jobs")
    assert_one_line_error(["jobs"], code, out, err)
    assert "the default (neither --kubeconfig nor KUBECONFIG is set)" in err


def test_no_current_context(cluster: FakeApiServer, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path / "no-current", current=False)))
    code, out, err = bookgen(capsys, "jobs")
    assert_one_line_error(["jobs"], code, out, err)
    assert "has no current context; name one with --context (fake)" in err
    code, out, err = run(["--context", "fake", "-n", NS, "--queue", NAME, "jobs", "-o", "json"], capsys)
    assert code == 0, err


def test_the_api_server_unreachable(cluster: FakeApiServer, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cluster.close()
    code, out, err = bookgen(capsys, "jobs")
    assert_one_line_error(["jobs"], code, out, err)
    assert f"cannot reach the API server at {cluster.url} (context fake)" in err


def test_the_cluster_queue_comes_after_the_per_command_flags_and_before_the_environment(tmp_path: Path) -> None:
    from bookgen_operator.cli.target import resolve
    from bookgen_worker.config import ConfigError

    ref = QueueRef(NAME, NS)
    shell = {"REDIS_URL": "redis://from-the-environment:6379/0", STATE_DIR_ENV: str(tmp_path)}
    found = resolve(None, None, shell, tmp_path, cluster=ref)
    assert (found.cluster, found.redis_url, found.source) == (ref, None, f"--queue {NAME}")
    for redis_url, state_dir in (("redis://x:1/0", None), (None, tmp_path)):
        with pytest.raises(ConfigError, match="names a queue on a cluster and"):
            resolve(redis_url, state_dir, shell, tmp_path, cluster=ref)


def test_the_url_carries_the_password_quoted_and_keeps_the_database() -> None:
    from bookgen_operator.cli.cluster import forwarded_url, with_password
    from bookgen_worker.config import redact

    url = with_password("rediss://redis.example.com:6380/2", "p@ss:/word")
    assert url == "rediss://:p%40ss%3A%2Fword@redis.example.com:6380/2" and "p%40ss" not in redact(url)
    external = queue_redis(queue_body({"mode": "external", "url": "redis://shared.infra.svc:6390/3",
                                       "passwordSecretRef": {"name": "ext"}}))
    assert forwarded_url(external, 40000) == "redis://127.0.0.1:40000/3"
    assert forwarded_url(queue_redis(queue_body()), 40001) == "redis://127.0.0.1:40001/0"
