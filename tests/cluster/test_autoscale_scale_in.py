"""Scale-in on the real ReplicaSet controller keeps the busy workers.

Four content pods run real `celery worker` processes (started by the node agent under the pods'
names, against the test's Redis); two of them hold long tasks. When the other two tasks finish, the
autoscaler scales the pool from 4 to 2: it marks the busy pods with a high pod-deletion-cost first,
and the real ReplicaSet controller then deletes the two idle pods, never a busy one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from kubernetes import client

from tests.cluster.conftest import Cluster
from tests.cluster.node_agent import WORKER_ENV_ANNOTATION, WORKER_REDIS_ANNOTATION
from tests.cluster.operator_run import Install, OperatorProcess, start_operator, stop_and_check, token_kubeconfig
from tests.cluster.test_operator import GROUP, PLURAL, VERSION, chart  # noqa: F401  (the module fixture)
from tests.support import blocking_tasks
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
POOL = "demo-worker-content"
HELD, SHORT = ("held-a", "held-b"), ("short-a", "short-b")


@pytest.fixture
def autoscaling_operator(cluster: Cluster, chart: Install, namespace: str,  # noqa: F811
                         tmp_path: Path) -> Iterator[OperatorProcess]:
    kubeconfig = token_kubeconfig(cluster, chart, tmp_path / "operator.kubeconfig")
    op = start_operator(kubeconfig, tmp_path / "operator.log", env={"BOOKGEN_AUTOSCALER": "on"},
                        audit_mark=cluster.audit.mark())
    try:
        yield op
    finally:
        stop_and_check(cluster, chart, op)


def replicas(cluster: Cluster, ns: str) -> int | None:
    try:
        return cluster.apps.read_namespaced_deployment(POOL, ns).spec.replicas
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def pods_of_pool(cluster: Cluster, ns: str) -> dict[str, bool]:
    """Pod name -> being deleted, for the content pool."""
    pods = cluster.core.list_namespaced_pod(ns, label_selector="bookgen.io/pool=content").items
    return {p.metadata.name: p.metadata.deletion_timestamp is not None for p in pods}


def test_scale_in_on_the_real_replicaset_controller_keeps_both_busy_pods(
    cluster: Cluster, namespace: str, redis_server: RedisServer, redis_client: redis.Redis, celery_app: Celery,
    autoscaling_operator: OperatorProcess,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    worker_env = {"BOOKGEN_EXTRA_TASK_MODULES": blocking_tasks.MODULE, "PYTHONPATH": str(ROOT)}
    cluster.core.patch_namespace(namespace, {"metadata": {"annotations": {
        WORKER_REDIS_ANNOTATION: redis_server.url(), WORKER_ENV_ANNOTATION: json.dumps(worker_env)}}})
    password = base64.b64encode(redis_server.password.encode()).decode()
    secret = {"metadata": {"name": "redis-pass"}, "data": {"password": password}}
    cluster.core.create_namespaced_secret(namespace, secret)
    spec = {
        "redis": {"mode": "external", "url": url, "passwordSecretRef": {"name": "redis-pass", "key": "password"}},
        "flower": {"enabled": False},
        "beat": {"enabled": False},
        "autoscaling": {"source": "redis", "pollIntervalSeconds": 1, "targetPerSlot": 1, "scaleDownWindowSeconds": 5},
        "pools": [
            {"name": "content", "queues": ["content_generation", "high_priority"], "concurrency": 1,
             "minReplicas": 1, "maxReplicas": 4},
            {"name": "monitoring", "queues": ["monitoring", "validation", "export"], "concurrency": 1,
             "minReplicas": 1, "maxReplicas": 1},
        ],
    }  # fmt: skip
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "BookGenQueue", "metadata": {"name": "demo"}, "spec": spec})

    # Four tasks: two finish on their own after a few seconds, two are held until the test releases them.
    for label in SHORT:
        celery_app.send_task(blocking_tasks.NAME, args=[label, 8.0], queue="content_generation")
    for label in HELD:
        celery_app.send_task(blocking_tasks.NAME, args=[label, 240.0], queue="content_generation")

    wait_for(lambda: replicas(cluster, namespace) == 4, timeout=90,
             what="the content pool scaled to 4 (4 tasks, 1 per slot)")
    wait_for(lambda: redis_client.hlen(blocking_tasks.STARTED_BY_KEY) == 4, timeout=120,
             what="all four tasks running on four worker pods")
    started_by = {k.decode(): v.decode() for k, v in redis_client.hgetall(blocking_tasks.STARTED_BY_KEY).items()}
    busy = {started_by[label] for label in HELD}
    assert len(set(started_by.values())) == 4 and busy <= set(pods_of_pool(cluster, namespace))

    # The short tasks end; demand is 2 in flight, so the pool goes to 2 and only the idle pods may go.
    wait_for(lambda: replicas(cluster, namespace) == 2, timeout=90,
             what="the content pool scaled in to 2")
    wait_for(lambda: {n for n, deleting in pods_of_pool(cluster, namespace).items() if not deleting} == busy
             and len(pods_of_pool(cluster, namespace)) == 2, timeout=90, what="the two idle pods removed")
    finished = [x.decode() for x in redis_client.lrange(blocking_tasks.FINISHED_KEY, 0, -1)]
    assert sorted(finished) == sorted(SHORT), "the held tasks must still be running"
    costs = {p.metadata.name: (p.metadata.annotations or {}).get("controller.kubernetes.io/pod-deletion-cost")
             for p in cluster.core.list_namespaced_pod(namespace, label_selector="bookgen.io/pool=content").items}
    assert all(costs[name] is not None and int(costs[name]) > 0 for name in busy), costs

    redis_client.set(blocking_tasks.RELEASE_KEY, "1")
    wait_for(lambda: redis_client.llen(blocking_tasks.FINISHED_KEY) == 4, timeout=60, what="the held tasks to finish")
    started = [x.decode() for x in redis_client.lrange(blocking_tasks.STARTED_KEY, 0, -1)]
    assert sorted(started) == sorted(SHORT + HELD), "no task ran twice"
