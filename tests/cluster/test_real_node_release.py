"""The release path, as a platform team lives it (issue 24, acceptances 1 and 2), on the real node.

`scripts/release` builds the image from our Dockerfile and the chart package, both at the project's
version, and pushes both to the cluster's own registry (registry.py: Debian's docker-registry inside the
cluster's namespace, `localhost:PORT` on both sides). The operator is installed from that registry
(`helm install oci://...` with only `image.repository` set), and a BookGenQueue that names no image runs
the image the registry serves. Then a second release (`--version`) and `helm upgrade` to its chart roll
every queue that does not pin `spec.image` while a book job runs, every chapter run exactly once, and a
queue that pins its image is not touched (its workloads' generations, its pods, the audit log).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import operator_pods, registry
from tests.cluster.conftest import Cluster
from tests.cluster.node import containerd_socket
from tests.cluster.operator_run import helm
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace
from tests.cluster.test_real_node_work import CHAPTER, counted_exactly, pool_status, slow_pools
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PROJECT_VERSION = next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
                       if line.startswith("version = "))
RELEASE = "bookgen-operator"  # the quick start's release name


@dataclass(frozen=True)
class Release:
    registry: str  # localhost:PORT
    version: str

    @property
    def repository(self) -> str:
        return f"{self.registry}/bookgen-queue"

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.version}"

    @property
    def chart(self) -> str:
        return f"oci://{self.registry}/charts/bookgen-operator"


def release(cluster: Cluster, *version: str) -> Release:
    """`scripts/release localhost:PORT --plain-http [--version V]`, as a user runs it from the clone."""
    address = registry.address(cluster.state.ports["registry"])
    args = ["bash", str(ROOT / "scripts" / "release"), address, "--plain-http"]
    if version:
        args += ["--version", version[0]]
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=ROOT,
                         env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
    assert out.returncode == 0, f"scripts/release failed:\n{out.stdout}\n{out.stderr[-4000:]}"
    made = Release(address, version[0] if version else PROJECT_VERSION)
    assert out.stdout.strip().splitlines()[-1].startswith(f"helm install {RELEASE} {made.chart} --version "
                                                           f"{made.version} "), out.stdout
    return made


def forget_pulled(cluster: Cluster, image: str) -> None:
    """Remove `image` from the node (if a run on this cluster pulled it before): the pods must pull it."""
    ctr = [str(Path(cluster.state.node_bin) / "ctr"), "--address", str(containerd_socket(cluster.sandbox)),
           "-n", "k8s.io"]
    subprocess.run([*ctr, "images", "rm", image], capture_output=True, timeout=60, check=False)


def pulled_digests(queue: Queue) -> set[str]:
    """The manifest digests the queue's BookGen containers run (their imageID: repo@sha256:...)."""
    return {s.image_id.rpartition("@")[2] for p in queue.pods() if p.metadata.deletion_timestamp is None
            for s in p.status.container_statuses or [] if "bookgen-queue" in s.image}


@pytest.fixture(scope="module")
def first(cluster: Cluster) -> Release:
    made = release(cluster)
    forget_pulled(cluster, made.image)
    return made


@pytest.fixture(scope="module")
def operator(cluster: Cluster, first: Release) -> Iterator[operator_pods.OperatorPods]:
    """The operator installed from the registry as the quick start says: only image.repository set."""
    system = restricted_namespace(cluster, "bookgen-system")
    mark = cluster.audit.mark()
    helm(cluster, "install", RELEASE, first.chart, "--version", first.version, "--plain-http", "-n", system,
         "--set", f"image.repository={first.repository}")
    chart = operator_pods.ChartInstall(system, RELEASE)
    operator_pods.wait_until_owner_references_map(cluster, chart)
    op = operator_pods.OperatorPods(cluster, chart, audit_mark=mark)
    try:
        wait_for(op.leader, timeout=180, interval=0.5, what="the operator from the registry running and leading")
        yield op
    finally:
        operator_pods.stop_and_check(cluster, op)
        operator_pods.uninstall(cluster, chart)
        cluster.delete_namespace(system)


def test_the_release_command_pushes_the_image_and_the_chart_at_the_project_version(
    cluster: Cluster, first: Release
) -> None:
    port = cluster.state.ports["registry"]
    assert first.version in registry.tags(port, "bookgen-queue")
    assert first.version in registry.tags(port, "charts/bookgen-operator")
    shown = helm(cluster, "show", "values", first.chart, "--version", first.version, "--plain-http")
    assert f"repository: {first.repository}\n" in shown, "the pushed chart's default image is the pushed image"
    chart = helm(cluster, "show", "chart", first.chart, "--version", first.version, "--plain-http")
    assert f"appVersion: {first.version}\n" in chart and f"version: {first.version}\n" in chart


def test_installed_from_the_registry_a_queue_without_an_image_runs_the_pushed_one(
    cluster: Cluster, first: Release, operator: operator_pods.OperatorPods
) -> None:
    served = registry.manifest_digest(cluster.state.ports["registry"], "bookgen-queue", first.version)
    assert {c.image for p in operator.pods() for c in p.spec.containers} == {first.image}
    namespace = restricted_namespace(cluster, "from-registry")
    queue = Queue(cluster, namespace, "plain")
    try:
        queue.create({"beat": {"enabled": False}})
        queue.wait_ready(timeout=240)
        assert images_of(queue) == {first.image}
        assert pulled_digests(queue) == {served}, "the pods run what the registry serves"
    finally:
        delete_queue_and_namespace(cluster, queue)


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
    cluster: Cluster, first: Release, operator: operator_pods.OperatorPods
) -> None:
    second = release(cluster, f"{PROJECT_VERSION}-upgrade.{uuid.uuid4().hex[:6]}")
    served = registry.manifest_digest(cluster.state.ports["registry"], "bookgen-queue", second.version)
    namespace = restricted_namespace(cluster, "upgrade")
    follows, pinned = Queue(cluster, namespace, "follows"), Queue(cluster, namespace, "pinned")
    try:
        follows.create({"pools": slow_pools(10, minReplicas=1, maxReplicas=1)})
        pinned.create({"image": {"repository": first.repository, "tag": first.version},
                       "beat": {"enabled": False}, "flower": {"enabled": False}})
        follows.wait_ready(timeout=240)
        pinned.wait_ready(timeout=240)
        assert images_of(follows) == {first.image} == images_of(pinned), "both start on the operator's image"
        pinned_pods = {p.metadata.uid for p in pinned.pods()}
        pinned_generations = generations(pinned)
        before = follows.counted("succeeded", CHAPTER)
        mark = cluster.audit.mark()
        with follows.redis_port() as port:
            job = follows.submit(port, "Hedy Lamarr", "--chapters", "4", "--parallel", "4", "--formats", "md")
            wait_for(lambda: (pool_status(follows, "content").get("inFlight") or 0) >= 1, timeout=90,
                     interval=0.5, what="a chapter running in the content pool")
            helm(cluster, "upgrade", RELEASE, second.chart, "--version", second.version, "--plain-http",
                 "-n", operator.chart.namespace, "--reuse-values", "--wait", "--timeout", "180s")

            def rolled() -> bool:
                pods = [p for p in follows.pods() if p.metadata.deletion_timestamp is None]
                return images_of(follows) == {second.image} and all(ready(p) for p in pods)

            wait_for(rolled, timeout=240, interval=1, what="every pod of the unpinned queue on the new image")
            assert pulled_digests(follows) == {served}
            final = follows.wait_job(port, job, timeout=300)
            assert final["state"] == "COMPLETED", final
        counted_exactly(follows, before, 4)
        assert {c.image for p in operator.pods() for c in p.spec.containers} == {second.image}
        assert images_of(pinned) == {first.image}
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
