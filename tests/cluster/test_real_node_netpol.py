"""The Redis NetworkPolicy, enforced (issue 26, acceptance 2): on the real node kube-router's policy
controller enforces NetworkPolicies (netpol_engine.py), so what the policy the operator writes keeps
out is kept out. A queue in its namespace with the chart's operator running as a pod, an application
namespace whose labelled pods `spec.redis.allowedClients` admits, and TCP connections opened to the
Redis Service's cluster address from inside pods (`kubectl exec`; nothing from this machine's
namespace): a pod in the queue's namespace without our labels cannot open one; a worker of the queue,
the operator's pod and the admitted client can. Then the policy admits every pod of the queue's
namespace and the same stranger gets through, and loses it again when the entry goes: the refusal
is the policy's, enforced, not a Redis that does not answer.

How a refused connection looks: kube-router ends a packet no policy admits with iptables' REJECT
(an ICMP port-unreachable), so the client sees "connection refused" at once rather than a timeout;
either counts as blocked here, and the test reports which it saw.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import operator_pods
from tests.cluster.conftest import Cluster, kubectl
from tests.cluster.product import Queue, queue_in_namespace, scratch_namespace
from tests.support.waiting import wait_for

APP_LABELS = {"app": "biographer"}
REDIS_PORT = 6379
#: How long one attempt waits for the connection: a refusal comes at once, a drop takes this long.
CONNECT_TIMEOUT = 4
#: kube-router applies a change of pods or policies on its next sync, seconds after the event.
ENFORCED_WITHIN = 90.0
OPEN, BLOCKED = "open", ("refused", "timeout")

#: Redis answers QUIT with +OK and closes, before any AUTH: proof the connection was opened.
PY_PROBE = f"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout={CONNECT_TIMEOUT})
    s.sendall(b"QUIT\\r\\n")
    print("open" if s.recv(16).startswith(b"+OK") else "other")
except ConnectionRefusedError:
    print("refused")
except (TimeoutError, socket.timeout):
    print("timeout")
"""


def busybox_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A restricted busybox pod (the image scripts/build-images.sh makes) that waits to be exec'd into."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "probe", "image": "bookgen.local/busybox:latest", "imagePullPolicy": "Never",
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 10001,
                                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
            }],
        },
    }  # fmt: skip


def exec_in(cluster: Cluster, namespace: str, pod: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return kubectl(cluster, "exec", "-n", namespace, pod, "--", *argv, check=False)


def busybox_connect(cluster: Cluster, namespace: str, pod: str, host: str) -> str:
    """open / refused / timeout: busybox nc sends QUIT and prints Redis' +OK when the connection opens."""
    out = exec_in(cluster, namespace, pod, "sh", "-c",
                  f"printf 'QUIT\\r\\n' | nc -w {CONNECT_TIMEOUT} {host} {REDIS_PORT}")
    text = out.stdout + out.stderr
    if "+OK" in out.stdout:
        return OPEN
    if "refused" in text:
        return "refused"
    if "timed out" in text:
        return "timeout"
    raise AssertionError(f"nc from {namespace}/{pod} said neither: {text!r}")


def python_connect(cluster: Cluster, namespace: str, pod: str, host: str) -> str:
    """open / refused / timeout, from a container of our image (the operator's, a worker's)."""
    out = exec_in(cluster, namespace, pod, "python", "-c", PY_PROBE, host, str(REDIS_PORT))
    result = out.stdout.strip()
    assert result in (OPEN, *BLOCKED), f"probe in {namespace}/{pod}: {out.stdout!r} {out.stderr!r}"
    return result


def settles(probe: Any, want: str | tuple[str, ...], what: str) -> str:
    """Wait (with a deadline) until `probe()` gives what is wanted; return it. Pods and policies just
    made reach kube-router's rules a sync later, so each side is awaited, never assumed."""
    wanted = (want,) if isinstance(want, str) else want
    seen: list[str] = []

    def check() -> str | None:
        seen.append(probe())
        return seen[-1] if seen[-1] in wanted else None

    try:
        return wait_for(check, timeout=ENFORCED_WITHIN, interval=1, what=what)
    except Exception as e:
        raise AssertionError(f"{what}: saw {seen}") from e


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[operator_pods.OperatorPods]:
    with operator_pods.chart_operator(cluster) as op:
        yield op


@pytest.fixture
def queue(cluster: Cluster, operator: operator_pods.OperatorPods) -> Iterator[Queue]:
    with queue_in_namespace(cluster, "guarded") as q:
        yield q


@pytest.fixture
def app_namespace(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "web") as name:
        yield name


def running(cluster: Cluster, namespace: str, name: str) -> None:
    def up() -> bool:
        pod = cluster.core.read_namespaced_pod(name, namespace)
        return pod.status.phase == "Running" and all(s.ready for s in pod.status.container_statuses or [])

    wait_for(up, timeout=120, interval=0.5, what=f"pod {namespace}/{name} running")


def test_redis_admits_the_queue_the_operator_and_allowed_clients_and_refuses_a_stranger(
    cluster: Cluster, operator: operator_pods.OperatorPods, queue: Queue, app_namespace: str,
) -> None:
    client_peer = {"podSelector": {"matchLabels": dict(APP_LABELS)},
                   "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": app_namespace}}}
    queue.create({"redis": {"allowedClients": [client_peer], "persistence": {"enabled": False}}})
    cluster.core.create_namespaced_pod(queue.namespace, busybox_pod("stranger", {}))
    cluster.core.create_namespaced_pod(app_namespace, busybox_pod("client", dict(APP_LABELS)))
    queue.wait_ready(timeout=240)
    for namespace, name in ((queue.namespace, "stranger"), (app_namespace, "client")):
        running(cluster, namespace, name)
    redis = cluster.core.read_namespaced_service(f"{queue.name}-redis", queue.namespace).spec.cluster_ip
    worker = next(p.metadata.name for p in queue.pods("content") if p.status.phase == "Running")
    operator_pod = operator.pods()[0].metadata.name

    def stranger() -> str:
        return busybox_connect(cluster, queue.namespace, "stranger", redis)

    # A pod of the queue's namespace without our labels: refused (the policy is in force at once for
    # a pod that existed before the policy: wait only for kube-router's first sync of both).
    blocked = settles(stranger, BLOCKED, "the unlabelled pod refused by Redis' policy")
    # Admitted: a worker of the queue, the operator's pod (chart labels, its namespace), the client.
    settles(lambda: python_connect(cluster, queue.namespace, worker, redis), OPEN, "a worker reaching Redis")
    settles(lambda: python_connect(cluster, operator.chart.namespace, operator_pod, redis), OPEN,
            "the operator's pod reaching Redis")
    settles(lambda: busybox_connect(cluster, app_namespace, "client", redis), OPEN,
            "the admitted client reaching Redis")
    # The stranger is still refused now that every other rule is in place (no transient opening).
    assert stranger() in BLOCKED

    # The policy admits every pod of the queue's namespace: the same stranger gets through...
    queue.patch({"redis": {"allowedClients": [client_peer, {"podSelector": {}}]}})
    started = time.monotonic()
    settles(stranger, OPEN, "the stranger admitted once allowedClients names every pod of its namespace")
    admitted_after = time.monotonic() - started
    # ... and is refused again when that entry goes, while the named client keeps its way in.
    queue.patch({"redis": {"allowedClients": [client_peer]}})
    settles(stranger, BLOCKED, "the stranger refused again once the entry is gone")
    assert busybox_connect(cluster, app_namespace, "client", redis) == OPEN
    print(f"netpol: a stranger's connection was {blocked}; admitted {admitted_after:.1f} s after the patch")
