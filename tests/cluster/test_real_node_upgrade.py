"""Workers follow the operator (issue 24, acceptance 2, the part that needs no registry): `helm upgrade`
of the chart to a second image tag rolls every queue that does not pin `spec.image` to the new image
while a book job runs, and the job completes with every chapter run exactly once; a queue that pins its
image is not touched (audit log).

The second tag is the same build under another name (`ctr images tag`), as a release with no change
but its version would be: the pods' image reference is what rolls a Deployment. Pushing it from a
registry is acceptance 1's release path, not built yet.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import operator_pods
from tests.cluster.conftest import Cluster
from tests.cluster.node import containerd_socket
from tests.cluster.operator_run import helm
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace
from tests.cluster.test_real_node_work import CHAPTER, counted_exactly, pool_status, slow_pools
from tests.support.waiting import wait_for

CHART = Path(__file__).resolve().parents[2] / "charts" / "bookgen-operator"


def tag_image(cluster: Cluster, ref: str, alias: str) -> None:
    ctr = [str(Path(cluster.state.node_bin) / "ctr"), "--address", str(containerd_socket(cluster.sandbox)),
           "-n", "k8s.io"]
    subprocess.run([*ctr, "images", "tag", "--force", ref, alias], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[operator_pods.OperatorPods]:
    """The chart's operator, one replica, its image the one this run built."""
    system = restricted_namespace(cluster, "bookgen-system")
    chart = operator_pods.install(cluster, system, system.replace("-system", ""), replicas=1)
    op = operator_pods.OperatorPods(cluster, chart, audit_mark=cluster.audit.mark())
    try:
        wait_for(op.leader, timeout=120, interval=0.5, what="the operator running and leading")
        yield op
    finally:
        operator_pods.stop_and_check(cluster, op)
        operator_pods.uninstall(cluster, chart)
        cluster.core.delete_namespace(system)


def generations(queue: Queue) -> dict[str, int]:
    """Each workload of the queue and its metadata.generation (bumped by any change of its spec)."""
    sel = f"app.kubernetes.io/instance={queue.name}"
    found = {**{f"Deployment/{d.metadata.name}": d.metadata.generation for d in
                queue.cluster.apps.list_namespaced_deployment(queue.namespace, label_selector=sel).items},
             **{f"StatefulSet/{s.metadata.name}": s.metadata.generation for s in
                queue.cluster.apps.list_namespaced_stateful_set(queue.namespace, label_selector=sel).items}}
    assert found, f"no workload of {queue.name}"
    return found


def images_of(queue: Queue) -> set[str]:
    return {c.image for p in queue.pods() if p.metadata.deletion_timestamp is None for c in p.spec.containers
            if "bookgen-queue" in c.image}


def test_helm_upgrade_rolls_the_unpinned_queue_mid_job_and_leaves_the_pinned_one(
    cluster: Cluster, operator: operator_pods.OperatorPods
) -> None:
    repository, tag = operator_pods.product_image(cluster)
    first, second = f"{repository}:{tag}", f"{repository}:{tag}-next"
    tag_image(cluster, first, second)
    namespace = restricted_namespace(cluster, "upgrade")
    follows, pinned = Queue(cluster, namespace, "follows"), Queue(cluster, namespace, "pinned")
    try:
        follows.create({"pools": slow_pools(10, minReplicas=1, maxReplicas=1)})
        pinned.create({"image": {"repository": repository, "tag": tag}, "beat": {"enabled": False},
                       "flower": {"enabled": False}})
        follows.wait_ready(timeout=240)
        pinned.wait_ready(timeout=240)
        assert images_of(follows) == {first} == images_of(pinned), "both start on the operator's image"
        pinned_pods = {p.metadata.uid for p in pinned.pods()}
        pinned_generations = generations(pinned)
        before = follows.counted("succeeded", CHAPTER)
        mark = cluster.audit.mark()
        with follows.redis_port() as port:
            job = follows.submit(port, "Hedy Lamarr", "--chapters", "4", "--parallel", "4", "--formats", "md")
            wait_for(lambda: (pool_status(follows, "content").get("inFlight") or 0) >= 1, timeout=90,
                     interval=0.5, what="a chapter running in the content pool")
            helm(cluster, "upgrade", operator.chart.release, str(CHART), "-n", operator.chart.namespace,
                 "--reuse-values", "--set", f"image.tag={tag}-next", "--wait", "--timeout", "180s")

            def rolled() -> bool:
                pods = [p for p in follows.pods() if p.metadata.deletion_timestamp is None]
                return images_of(follows) == {second} and all(ready(p) for p in pods)

            wait_for(rolled, timeout=240, interval=1, what="every pod of the unpinned queue on the new image")
            final = follows.wait_job(port, job, timeout=300)
            assert final["state"] == "COMPLETED", final
        counted_exactly(follows, before, 4)
        assert images_of(pinned) == {first}
        assert {p.metadata.uid for p in pinned.pods()} == pinned_pods, "the pinned queue's pods were replaced"
        # The new operator process may PATCH a child once to re-learn its stored form (a no-op on the
        # server, core/reconcile.py): what proves the pinned queue untouched is that no workload's spec
        # changed (its generation) and no pod was replaced.
        assert generations(pinned) == pinned_generations, "a workload of the pinned queue was changed"
        writes = [(w.verb, w.resource, w.name) for w in cluster.audit.writes(operator.chart.username, since=mark)
                  if w.namespace == namespace and w.name.startswith("pinned-")]
        print(f"writes to the pinned queue's children during the upgrade (no-op re-learning): {writes}")
    finally:
        delete_queue_and_namespace(cluster, pinned)
        delete_queue_and_namespace(cluster, follows)
