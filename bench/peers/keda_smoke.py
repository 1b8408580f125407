"""The proof that real KEDA runs beside the test cluster, timed: a Redis pod, a Deployment of busybox
pods, a ScaledObject with KEDA's `redis` list-length scaler on the Redis Service's DNS name. Pushing
items onto the list makes the HPA (the real kube-controller-manager's, fed by KEDA's metrics adapter)
scale the Deployment up; emptying the list brings it back to minReplicaCount.

    python -m bench.peers.keda smoke [--items 20] [--list-length 5] [--min-replicas 1] [--keep]

It starts KEDA (bench/peers/keda.py) when it is not running and stops it afterwards in that case.
Timings are from the moment the push (or the emptying) returned to the Deployment's replicas reaching
the expected count, and to as many pods Ready. The HPA syncs every 15 s (the controller-manager's
default); the scale-down stabilisation window and KEDA's cooldown are set short here (flags), so the
figures show the machinery, not the defaults' five minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peers import keda
from tests.cluster.controlplane import State

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SECURITY = {
    "allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 10001,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}  # fmt: skip
REDIS_IMAGE = "docker.io/library/redis:7.2.5-alpine"  # Debian's redis-server, built by scripts/build-images.sh
WORK_IMAGE = "bookgen.local/busybox:latest"
LIST = "jobs"
TARGET = "work"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items", type=int, default=20, help="items pushed onto the list")
    p.add_argument("--list-length", type=int, default=5, help="the scaler's listLength (items per replica)")
    p.add_argument("--min-replicas", type=int, default=1, help="minReplicaCount (0: KEDA's own activation)")
    p.add_argument("--max-replicas", type=int, default=6)
    p.add_argument("--start-replicas", type=int, default=2, help="the Deployment's replicas before KEDA")
    p.add_argument("--stabilization", type=int, default=15, help="the HPA's scale-down window, s")
    p.add_argument("--cooldown", type=int, default=10, help="KEDA's cooldownPeriod, s (only for scale to 0)")
    p.add_argument("--polling", type=int, default=5, help="KEDA's pollingInterval, s")
    p.add_argument("--timeout", type=float, default=300.0, help="per phase, s")
    p.add_argument("--keep", action="store_true", help="leave the namespace and KEDA running")


@dataclass(frozen=True)
class Phase:
    name: str
    expected: int
    first_change: float | None  # s until the replicas first moved (None: they were already there)
    reached: float  # s until spec.replicas == expected
    ready: float  # s until as many pods were Ready
    path: list[int]  # every spec.replicas value seen, in order


def manifests(ns: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    redis_labels = {"app": "redis"}
    work_labels = {"app": TARGET}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": redis_labels},
                  "template": {"metadata": {"labels": redis_labels}, "spec": {"containers": [{
                      "name": "redis", "image": REDIS_IMAGE, "imagePullPolicy": "Never",
                      "command": ["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"],
                      "ports": [{"containerPort": 6379}], "securityContext": SECURITY,
                      "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis", "namespace": ns},
         "spec": {"selector": redis_labels, "ports": [{"port": 6379, "targetPort": 6379}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": TARGET, "namespace": ns},
         "spec": {"replicas": args.start_replicas, "selector": {"matchLabels": work_labels},
                  "template": {"metadata": {"labels": work_labels}, "spec": {
                      "terminationGracePeriodSeconds": 2, "containers": [{
                          "name": "work", "image": WORK_IMAGE, "imagePullPolicy": "Never",
                          "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                          "securityContext": SECURITY}]}}}},
    ]  # fmt: skip


def scaled_object(ns: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": TARGET, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"name": TARGET},
            "pollingInterval": args.polling, "cooldownPeriod": args.cooldown,
            "minReplicaCount": args.min_replicas, "maxReplicaCount": args.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleDown": {"stabilizationWindowSeconds": args.stabilization}}}},
            "triggers": [{"type": "redis", "metadata": {
                "address": f"redis.{ns}.svc.cluster.local:6379", "listName": LIST,
                "listLength": str(args.list_length)}}],
        },
    }  # fmt: skip


def replicas(d: Path, ns: str) -> tuple[int, int]:
    """(spec.replicas, readyReplicas) of the target Deployment."""
    dep = json.loads(keda.kubectl(d, "get", "deployment", TARGET, "-n", ns, "-o", "json").stdout)
    return int(dep["spec"].get("replicas", 0)), int(dep.get("status", {}).get("readyReplicas", 0) or 0)


def watch(d: Path, ns: str, name: str, expected: int, since: float, timeout: float) -> Phase:
    """Poll the Deployment until `expected` replicas are asked for and Ready; the times from `since`."""
    path: list[int] = []
    first: float | None = None
    reached: float | None = None
    deadline = since + timeout
    while time.monotonic() < deadline:
        spec, ready = replicas(d, ns)
        now = time.monotonic() - since
        if not path or path[-1] != spec:
            if path and first is None:
                first = now
            path.append(spec)
        if spec == expected and reached is None:
            reached = now
        if reached is not None and spec == expected and ready == expected:
            return Phase(name, expected, first, reached, now, path)
        time.sleep(0.5)
    raise RuntimeError(f"{name}: no {expected} replicas Ready within {timeout:.0f} s (seen {path})")


def redis_cli(d: Path, ns: str, *args: str) -> str:
    return keda.kubectl(d, "exec", "-n", ns, "deploy/redis", "--", "redis-cli", *args).stdout.strip()


def external_metric(d: Path, ns: str) -> str:
    """What the HPA reads: the external metrics API, served by KEDA's adapter through the aggregator."""
    raw = keda.kubectl(d, "get", "--raw", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/s0-redis-{LIST}"
                       f"?labelSelector=scaledobject.keda.sh%2Fname%3D{TARGET}", check=False)
    if raw.returncode != 0:
        return f"error: {raw.stderr.strip()}"
    items = json.loads(raw.stdout).get("items", [])
    return ", ".join(f"{i['metricName']}={i['value']}" for i in items) or "no items"


def run(d: Path, st: State, args: argparse.Namespace) -> int:
    already = keda.running(d)
    t = time.monotonic()
    started = keda.start(d, st, keda.build())
    start_s = time.monotonic() - t
    ns = f"keda-smoke-{secrets.token_hex(3)}"
    phases: list[Phase] = []
    try:
        keda.apply(d, [{"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": {**RESTRICTED, **keda.PART_OF}}}])
        keda.apply(d, manifests(ns, args))
        keda.kubectl(d, "rollout", "status", "-n", ns, "deployment/redis", "--timeout=120s")
        keda.kubectl(d, "rollout", "status", "-n", ns, f"deployment/{TARGET}", "--timeout=120s")
        t = time.monotonic()
        keda.apply(d, [scaled_object(ns, args)])
        phases.append(watch(d, ns, "settle to min (empty list)", args.min_replicas, t, args.timeout))
        keda.kubectl(d, "wait", "-n", ns, f"scaledobject/{TARGET}", "--for=condition=Ready", "--timeout=60s")
        print(f"external metric, empty list: {external_metric(d, ns)}")
        expected = min(args.max_replicas, max(args.min_replicas, math.ceil(args.items / args.list_length)))
        redis_cli(d, ns, "rpush", LIST, *(f"item-{i}" for i in range(args.items)))
        t = time.monotonic()
        print(f"pushed {args.items} items (LLEN {redis_cli(d, ns, 'llen', LIST)})")
        phases.append(watch(d, ns, f"scale up ({args.items} items)", expected, t, args.timeout))
        print(f"external metric, full list: {external_metric(d, ns)}")
        redis_cli(d, ns, "del", LIST)
        t = time.monotonic()
        phases.append(watch(d, ns, "scale down (list emptied)", args.min_replicas, t, args.timeout))
        hpa = json.loads(keda.kubectl(d, "get", "hpa", "-n", ns, "-o", "json").stdout)["items"]
        print(f"HPA made by KEDA: {', '.join(h['metadata']['name'] for h in hpa)}")
    finally:
        if not args.keep:
            # The ScaledObject first, so KEDA removes its HPA while the Deployment is still there; the
            # namespace while the adapter still serves, so its deletion finds every API.
            keda.kubectl(d, "delete", "scaledobject", TARGET, "-n", ns, "--ignore-not-found", "--timeout=60s",
                         check=False)
            keda.kubectl(d, "delete", "namespace", ns, "--timeout=120s", check=False)
            if not already:
                keda.stop(d)
    print(f"\nKEDA {started.version} (operator + adapter): ready {start_s:.1f} s after the call"
          f" {started.timings}{' (already running)' if already else ''}")
    print(f"{'phase':32} {'expected':>8} {'first move':>10} {'reached':>8} {'all Ready':>9}  replicas seen")
    for p in phases:
        first = f"{p.first_change:.1f} s" if p.first_change is not None else "-"
        print(f"{p.name:32} {p.expected:>8} {first:>10} {p.reached:>6.1f} s {p.ready:>7.1f} s  {p.path}")
    return 0
