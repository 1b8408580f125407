"""No secret in any output (issue 26, acceptance 5).

Every namespace a cluster test deletes is scanned first (secret_scan.py: every container's log, current
and previous, every Event, every BookGenQueue's status; the operator's logs at its stop) for the value
of every Secret in the cluster, plain and in base64. Two tests here:

- the self-check: a pod prints a queue's Redis password (plain, and inside a basic-auth header in
  base64); a scan of its namespace into a fresh ledger names that pod and container, shows no password,
  and leaves the session's ledger untouched;
- the verdict, moved to run last (conftest.py): nothing found in the whole run, no scan failed, every
  namespace the run deleted (the audit log says which) was scanned before, and the product's passwords
  were among the values searched for when a queue was scanned. It judges what this run scanned: with
  the whole folder that is the suite's output, with some files the output of those. With nothing else
  (this file alone: the self-check deletes its pod before the session's scan) it has no pod log to
  judge and fails rather than pass on nothing.
"""

from __future__ import annotations

import base64
from typing import Any

from bookgen_operator.core.resources.secrets import generated_secrets
from bookgen_operator.core.spec import parse_queue

from tests.cluster import operator_pods, secret_scan
from tests.cluster.conftest import SECRET_VERDICT, Cluster
from tests.cluster.secret_scan import SecretScan, SecretValue
from tests.support.waiting import wait_for

LEAKY = "leaky"  # the queue whose Secrets the operator would make, made here as it makes them
CLIENT = "client"
#: Prints the password as an application that logs its connection string would, then as a basic-auth
#: header carries it (base64, after a two-byte "x:": the value at a different base64 alignment).
LEAK = 'echo "connecting to redis://:$REDIS_PASSWORD@leaky-redis:6379/0"; ' \
       'echo "Authorization: Basic $(printf %s "x:$REDIS_PASSWORD" | base64 -w0)"'


def leaky_pod(image: str) -> dict[str, Any]:
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    return {"metadata": {"name": CLIENT}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": CLIENT, "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", LEAK],
            "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{LEAKY}-redis",
                                                                               "key": "password"}}}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": restricted}]}}


def test_the_scan_finds_a_redis_password_that_a_pod_prints(cluster: Cluster, namespace: str) -> None:
    session = cluster.secret_scan
    assert session is not None, "the cluster fixture keeps the session's scan"
    findings_before = len(session.findings)
    spec = parse_queue({"metadata": {"name": LEAKY, "namespace": namespace, "uid": "self-check"}, "spec": {}})
    for secret in generated_secrets(spec):  # <queue>-redis and <queue>-flower-auth, random as the operator's
        cluster.core.create_namespaced_secret(namespace, secret)
    repository, tag = operator_pods.product_image(cluster)
    cluster.core.create_namespaced_pod(namespace, leaky_pod(f"{repository}:{tag}"))
    try:
        wait_for(lambda: cluster.core.read_namespaced_pod(CLIENT, namespace).status.phase in ("Succeeded", "Failed"),
                 timeout=120, interval=0.5, what="the leaky client pod to finish")
        assert cluster.core.read_namespaced_pod(CLIENT, namespace).status.phase == "Succeeded"

        fresh = SecretScan()
        found = secret_scan.scan_namespace(cluster, namespace, fresh)

        assert not fresh.errors, fresh.errors
        where, label = f"{namespace}/pod/{CLIENT}/{CLIENT}", f"{namespace}/{LEAKY}-redis/password"
        assert {(f.where, f.secret, f.kind, f.form, f.line) for f in found} == {
            (where, label, "redis password", "plain", 1), (where, label, "redis password", "base64", 2)}
        # Flower's password is searched for and not there; its user name "admin" is not searched for.
        assert fresh.secret_kinds()["flower password"] >= 1
        assert "identifier" in fresh.skipped[f"{namespace}/{LEAKY}-flower-auth/username"]
        # What the scan prints names the pod and the Secret, never the password in any form.
        password = cluster.core.read_namespaced_secret(f"{LEAKY}-redis", namespace).data["password"]
        value = SecretValue(label, "redis password", base64.b64decode(password).decode())
        shown = "\n".join([*map(str, found), repr(found), fresh.summary()])
        assert f"«{label}»" in shown
        assert not [form for needle, form in value.needles().items() if needle in shown]
        # The session's ledger learnt nothing from this scan and found nothing.
        assert len(session.findings) == findings_before
        assert not [v for v in session.known.values() if v.label.startswith(f"{namespace}/")]
    finally:
        # Gone before the namespace fixture's own scan (into the session's ledger) runs at teardown.
        cluster.core.delete_namespaced_pod(CLIENT, namespace, grace_period_seconds=0)
        wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, timeout=60, interval=0.5,
                 what="the leaky client pod gone")


def test_no_secret_in_any_output_of_this_run(cluster: Cluster) -> None:
    assert test_no_secret_in_any_output_of_this_run.__name__ == SECRET_VERDICT  # conftest moves it last
    scan = cluster.secret_scan
    assert scan is not None
    scan.judged = True
    print(scan.summary())
    assert not scan.errors, "scans that failed:\n" + "\n".join(scan.errors)
    assert not scan.findings, "secrets in this run's output:\n" + "\n".join(map(str, scan.findings))
    unscanned = cluster.audit.deleted_namespaces(scan.audit_mark) - scan.namespaces
    assert not unscanned, (f"namespaces this run deleted without scanning them first: {sorted(unscanned)} "
                           "(delete with cluster.delete_namespace, or call secret_scan.scan_namespace)")
    assert scan.namespaces and scan.counts["logs"], (
        "this run scanned nothing: the verdict judges the cluster tests of its own run "
        "(python -m pytest tests/cluster, or some of its files with this one)")
    if scan.queues:
        kinds = scan.secret_kinds()
        assert kinds["redis password"] and kinds["flower password"], (
            f"queues were scanned ({len(scan.queues)}) but not for their passwords: {dict(kinds)}")
