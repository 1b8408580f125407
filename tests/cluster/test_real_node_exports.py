"""Books that outlive their pods, on the real node (issue 23, acceptances 3 and 4).

- A claimed volume (spec.exports unset: the default claim, bound by the node's local-path provisioner):
  a book is written, its export pod is deleted, and `bookgen fetch --queue` from this machine (kubectl
  exec through the API server into the pod that replaced it) gets the three files byte for byte as the
  worker wrote them (the SHA-256 the worker recorded, checked by the command and here again). The claim
  has no owner: deleting the BookGenQueue keeps it, Bound, with the books.
- A real S3-compatible server in the cluster (versitygw from its Go module, as a pod and a Service),
  its credentials in a Secret mounted in the export pods: a wrong key holds the export with the server's
  error in the job's status (retried, the job still RUNNING); the corrected Secret reaches the running
  pods (the kubelet refreshes the volume) and the job completes, nothing lost; the export pod is
  deleted and `bookgen fetch` gets every file, the same bytes as the bucket holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import operator_pods
from tests.cluster.conftest import KUBECTL, Cluster, kubectl
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace
from tests.cluster.reach import port_forward
from tests.support.waiting import wait_for

BOOKGEN = str(Path(KUBECTL).parent / "bookgen")
S3_IMAGE = "bookgen.local/versitygw:latest"
S3_ROOT = ("bookgen-root-access", "bookgen-root-secret-0123456789")
BUCKET = "books"
#: The export retries patiently enough for the test to correct the Secret and the kubelet to deliver it.
PATIENT_EXPORT = [{"name": "BOOKGEN_RETRY_OVERRIDES",
                   "value": json.dumps({"export": {"max_retries": 40, "backoff_base": 5, "backoff_max": 10,
                                                   "jitter": False}})}]


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[operator_pods.OperatorPods]:
    system = restricted_namespace(cluster, "bookgen-system")
    chart = operator_pods.install(cluster, system, system.replace("-system", ""))
    op = operator_pods.start(cluster, chart, replicas=1)
    try:
        yield op
    finally:
        operator_pods.stop_and_check(cluster, op)
        operator_pods.uninstall(cluster, chart)
        cluster.delete_namespace(system)


@pytest.fixture
def queue(cluster: Cluster, operator: operator_pods.OperatorPods) -> Iterator[Queue]:
    q = Queue(cluster, restricted_namespace(cluster, "books"), "bq")
    try:
        yield q
    finally:
        delete_queue_and_namespace(cluster, q)


def bookgen_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line as a user on this machine runs it: their kubeconfig, kubectl beside bookgen."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([BOOKGEN, *args], capture_output=True, text=True, env=env, timeout=180, check=False)


def book(queue: Queue, subject: str) -> tuple[str, dict[str, Any]]:
    with queue.redis_port() as port:
        job_id = queue.submit(port, subject, "--chapters", "2", "--words", "60", "--formats", "md,docx,pdf")
        return job_id, queue.wait_job(port, job_id, timeout=600)


def delete_export_pods(cluster: Cluster, queue: Queue) -> set[str]:
    old = {p.metadata.name for p in queue.pods("export")}
    assert old, "an export pod runs"
    for name in old:
        cluster.core.delete_namespaced_pod(name, queue.namespace, grace_period_seconds=30)

    def replaced() -> bool:
        pods = queue.pods("export")
        return bool(pods) and all(p.metadata.name not in old and ready(p) for p in pods)

    wait_for(replaced, timeout=240, interval=1, what="the export pods to be replaced and ready")
    return old


def fetch_and_check(cluster: Cluster, queue: Queue, job_id: str, recorded: dict[str, Any],
                    out: Path) -> dict[str, bytes]:
    """`bookgen files` and `bookgen fetch` through the API server; every file as the worker recorded it."""
    listed = bookgen_cli(cluster, "files", job_id, "--queue", queue.name, "-n", queue.namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    files = {entry["format"]: entry for entry in json.loads(listed.stdout)}
    assert {fmt: (e["location"], e["bytes"], e["sha256"]) for fmt, e in files.items()} == {
        fmt: (e["location"], e["bytes"], e["sha256"]) for fmt, e in recorded.items()}
    fetched = bookgen_cli(cluster, "fetch", job_id, "--queue", queue.name, "-n", queue.namespace, "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.count("  ok") == 3, fetched.stdout
    got = {}
    for fmt, entry in recorded.items():
        path = out / entry["location"].rsplit("/", 1)[1]
        data = path.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"]), fmt
        assert job_id in path.name  # names stay collision-free: the job's own id
        got[fmt] = data
    assert got["markdown"].startswith(b"# ") and got["pdf"].startswith(b"%PDF") and got["docx"][:2] == b"PK"
    return got


def test_books_on_the_claimed_volume_outlive_the_export_pod_and_the_queue(
    cluster: Cluster, queue: Queue, tmp_path: Path
) -> None:
    queue.create({})  # spec.exports unset: the operator claims a volume of the default class
    queue.wait_ready(timeout=300)
    claim = cluster.core.read_namespaced_persistent_volume_claim(f"{queue.name}-exports", queue.namespace)
    assert claim.status.phase == "Bound" and not claim.metadata.owner_references
    started = time.monotonic()
    job_id, job = book(queue, "Ada Lovelace")
    assert job["state"] == "COMPLETED", job
    recorded = job["files"]
    assert set(recorded) == {"markdown", "docx", "pdf"}
    assert all(e["location"].startswith("/var/lib/bookgen/output/") for e in recorded.values()), recorded
    print(f"book written in {time.monotonic() - started:.0f} s")

    delete_export_pods(cluster, queue)
    fetch_and_check(cluster, queue, job_id, recorded, tmp_path / "books")

    # A tampered file is refused (read in the pod: the bytes on the volume are what the worker wrote).
    markdown = recorded["markdown"]["location"]
    pod = queue.pods("export")[0].metadata.name
    inside = kubectl(cluster, "exec", "-n", queue.namespace, pod, "-c", "worker", "--", "sha256sum", markdown)
    assert inside.stdout.split()[0] == recorded["markdown"]["sha256"]

    # The claim is kept when the queue goes, with the books on it.
    kubectl(cluster, "delete", "bookgenqueue", queue.name, "-n", queue.namespace, "--wait=true", "--timeout=120s")
    wait_for(lambda: not queue.pods(), timeout=180, interval=1, what="the queue's pods gone")
    kept = cluster.core.read_namespaced_persistent_volume_claim(f"{queue.name}-exports", queue.namespace)
    assert kept.status.phase == "Bound" and kept.metadata.deletion_timestamp is None


# -- a real S3-compatible server in the cluster --------------------------------------------------------


def start_s3_server(cluster: Cluster, namespace: str) -> str:
    """versitygw as a pod of the restricted namespace, behind Service `s3`; returns its endpoint."""
    core = cluster.core
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s3-root"},
                                              "stringData": {"access": S3_ROOT[0], "secret": S3_ROOT[1]}})
    secure = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "allowPrivilegeEscalation": False,
              "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}
    labels = {"app": "s3"}
    cluster.apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "s3", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {"fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "versitygw", "image": S3_IMAGE, "imagePullPolicy": "IfNotPresent",
                    "args": ["--port", ":7070", "posix", "/data"],
                    "env": [{"name": "ROOT_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3-root",
                                                                                          "key": "access"}}},
                            {"name": "ROOT_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3-root",
                                                                                              "key": "secret"}}}],
                    "ports": [{"name": "s3", "containerPort": 7070}],
                    "readinessProbe": {"tcpSocket": {"port": 7070}, "periodSeconds": 2},
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                    "securityContext": secure,
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            }}}})
    core.create_namespaced_service(namespace, {"metadata": {"name": "s3"}, "spec": {
        "selector": labels, "ports": [{"name": "s3", "port": 7070, "targetPort": "s3"}]}})
    wait_for(lambda: any(ready(p) for p in core.list_namespaced_pod(namespace, label_selector="app=s3").items),
             timeout=120, interval=1, what="the S3 server pod ready")
    return f"http://s3.{namespace}.svc.cluster.local:7070"


def s3_client(port: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=S3_ROOT[0],
                        aws_secret_access_key=S3_ROOT[1], region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def set_credentials(cluster: Cluster, namespace: str, secret_key: str, *, create: bool = False) -> None:
    body = {"metadata": {"name": "books-s3"}, "stringData": {"accessKeyId": S3_ROOT[0], "secretAccessKey": secret_key}}
    if create:
        cluster.core.create_namespaced_secret(namespace, body)
    else:
        cluster.core.patch_namespaced_secret("books-s3", namespace, body)


def test_books_in_a_real_s3_server_a_wrong_key_is_reported_and_a_fixed_secret_completes_the_job(
    cluster: Cluster, queue: Queue, tmp_path: Path
) -> None:
    ns = queue.namespace
    endpoint = start_s3_server(cluster, ns)
    with port_forward(KUBECTL, cluster.env(), ns, "svc/s3", 7070) as port:
        s3_client(port).create_bucket(Bucket=BUCKET)
    set_credentials(cluster, ns, "a-wrong-secret-key", create=True)
    queue.create({
        "exports": {"s3": {"endpoint": endpoint, "bucket": BUCKET, "prefix": "bq/",
                           "credentialsSecretRef": {"name": "books-s3"}}},
        "pools": [{"name": "content", "queues": ["content_generation", "high_priority"], "concurrency": 2},
                  {"name": "validation", "queues": ["validation"], "concurrency": 2},
                  {"name": "export", "queues": ["export"], "concurrency": 1, "env": PATIENT_EXPORT},
                  {"name": "monitoring", "queues": ["monitoring"], "concurrency": 1}],
    })
    queue.wait_ready(timeout=300)
    with queue.redis_port() as port:
        job_id = queue.submit(port, "Alan Turing", "--chapters", "2", "--words", "60", "--formats", "md,docx,pdf")

        def failing() -> dict[str, Any] | None:
            job = queue.job(port, job_id)
            return job if job.get("retrying") else None

        stuck = wait_for(failing, timeout=300, interval=1, what="the export to report the refused upload")
        assert stuck["state"] == "RUNNING", stuck
        problems = " ".join(stuck["retrying"].values())
        assert "SignatureDoesNotMatch" in problems and "retrying" in problems, problems
        assert "check the access key id and secret key" in problems and "a-wrong-secret-key" not in problems
        assert "SignatureDoesNotMatch" in stuck["status"]
        assert stuck["files"] == {} and stuck["error"] == ""
        print(f"while the key is wrong: {stuck['status']}")

        fixed_at = time.monotonic()
        set_credentials(cluster, ns, S3_ROOT[1])  # the user corrects the Secret; no pod is restarted
        job = queue.wait_job(port, job_id, timeout=400)
        print(f"completed {time.monotonic() - fixed_at:.0f} s after the Secret was corrected")
    assert job["state"] == "COMPLETED" and job["error"] == "" and job["retrying"] == {}, job
    recorded = job["files"]
    assert all(e["location"].startswith(f"s3://{BUCKET}/bq/") for e in recorded.values()), recorded

    restarts = sum(s.restart_count for p in queue.pods("export") for s in p.status.container_statuses or [])
    assert restarts == 0, "the corrected Secret took effect without a restart"
    delete_export_pods(cluster, queue)
    got = fetch_and_check(cluster, queue, job_id, recorded, tmp_path / "books")
    with port_forward(KUBECTL, cluster.env(), ns, "svc/s3", 7070) as port:
        client = s3_client(port)
        for fmt, entry in recorded.items():
            key = entry["location"].split("/", 3)[3]
            assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == got[fmt], fmt
