"""N BookGenQueues x 4 pools on the real control plane: does the operator keep its 1 s poll?

    .venv/bin/python -m bench.operator_scale --queues 250 --window 60

Starts (or reuses) the test control plane (tests/cluster), one redis-server, installs the chart, runs
the real operator as the chart's ServiceAccount, creates N queues (external Redis, no beat or Flower,
every pool at exactly one replica so nothing scales), and once they are Ready measures over a window:

- polls on time / late / missed, from the operator's own `bookgen_operator_autoscaler_polls_total`;
- API requests per pool per second, every request of the operator's ServiceAccount in the audit log
  (reads too; a watch counts once, when it starts);
- the operator process's CPU (share of one core) and resident memory.

Two loads: `--load idle` (empty queues: the scheduler may back idle queues off to 5 s) and
`--load busy` (a backlog every queue sees, so every pool is polled each second). The baseline is the
1 s target itself: 100 % of polls on time and 0 requests per pool per second in steady state.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale_spec import POOLS, queue_spec  # noqa: E402
from tests.cluster import controlplane, monitoring_crds  # noqa: E402
from tests.cluster.audit import AuditLog  # noqa: E402
from tests.cluster.conftest import RESTRICTED, Cluster, kubectl  # noqa: E402
from tests.cluster.operator_run import install_chart, start_operator, token_kubeconfig, uninstall_chart  # noqa: E402
from tests.support.process_stats import rss_mib  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402


def cluster() -> tuple[Cluster, bool]:
    from kubernetes import client, config

    d = controlplane.state_dir()
    st = controlplane.State.load(d)
    started = False
    if not (st and st.node == "fake" and controlplane.healthy(d, st)):
        import subprocess

        out = subprocess.run(["bash", str(ROOT / "scripts" / "build-control-plane.sh")], capture_output=True, text=True,
                             check=True).stdout
        # The fake node: 1,000 queues' pods are more than two cores can run; this measures the operator.
        controlplane.up(Path(out.strip().splitlines()[-1]), node_kind="fake")
        started = True
    api = config.new_client_from_config(str(controlplane.kubeconfig_path(d)))
    state = controlplane.State.load(d)
    assert state is not None
    c = Cluster(d, controlplane.kubeconfig_path(d), api, AuditLog(d / "audit.log"),
                client.VersionApi(api).get_code().git_version, state)
    kubectl(c, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    # The prometheus-operator's CRDs, as in the test suite's cluster and under kube-prometheus-stack: every
    # queue then also has a ServiceMonitor and a PrometheusRule, which the reconciles list (not watched).
    for crd in monitoring_crds.crd_files():
        kubectl(c, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl(c, "wait", "--for=condition=Established", "--timeout=60s",
            *[f"crd/{kind}.monitoring.coreos.com" for kind in monitoring_crds.KINDS])
    return c, started


def scrape(port: int) -> dict[str, float]:
    """The poll outcomes, and the garbage collector's pauses (count and seconds, over its generations)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    polls = {m[0]: float(m[1]) for m in re.findall(r'^bookgen_operator_autoscaler_polls_total\{result="(\w+)"\} (\S+)$',
                                                     text, re.M)}
    for part in ("count", "sum"):
        polls[f"gc_{part}"] = sum(float(v) for v in re.findall(
            rf'^bookgen_operator_gc_pause_seconds_{part}\{{[^}}]*\}} (\S+)$', text, re.M))
    for le, count in re.findall(r'^bookgen_operator_gc_pause_seconds_bucket\{generation="\d",le="([^"]+)"\} (\S+)$',
                                text, re.M):
        polls[f"gc_le_{le}"] = polls.get(f"gc_le_{le}", 0.0) + float(count)
    frozen = re.search(r'^bookgen_operator_gc_frozen_objects (\S+)$', text, re.M)
    polls["gc_frozen"] = float(frozen.group(1)) if frozen else 0.0
    polls["gc_over_100ms"] = sum(float(c) - float(b) for c, b in zip(
        re.findall(r'^bookgen_operator_gc_pause_seconds_count\{[^}]*\} (\S+)$', text, re.M),
        re.findall(r'^bookgen_operator_gc_pause_seconds_bucket\{generation="\d",le="0.1"\} (\S+)$', text, re.M),
        strict=False))
    return polls


def pause_quantile(before: dict[str, float], after: dict[str, float], q: float) -> str:
    """The histogram bucket (its upper bound) that holds the q-quantile of the window's GC pauses."""
    bounds = sorted((float(k[6:]), k) for k in after if k.startswith("gc_le_"))
    total = after["gc_count"] - before["gc_count"]
    if not total:
        return "-"
    for bound, key in bounds:
        if after[key] - before.get(key, 0.0) >= q * total:
            return f"<= {bound * 1000:.0f} ms" if bound != float("inf") else "> 2.5 s"
    return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")




def ready_count(c: Cluster, ns: str) -> int:
    items = c.custom.list_namespaced_custom_object("bookgen.io", "v1alpha1", ns, "bookgenqueues")["items"]
    return sum(1 for q in items for cond in (q.get("status") or {}).get("conditions") or []
               if cond["type"] == "Ready" and cond["status"] == "True")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queues", type=int, default=250)
    p.add_argument("--window", type=float, default=60.0, help="seconds of steady state measured")
    p.add_argument("--load", choices=("idle", "busy"), default="busy")
    p.add_argument("--settle-timeout", type=float, default=900.0)
    p.add_argument("--settle", type=float, default=90.0,
                   help="seconds after every queue is Ready before the window (the last pods' readiness "
                        "still changes Deployments, and each change reconciles its queue)")
    args = p.parse_args(argv)

    c, started = cluster()
    work = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    server = start_redis(work)
    suffix = uuid.uuid4().hex[:6]
    sys_ns, ns = f"scale-system-{suffix}", f"scale-{suffix}"
    for name in (sys_ns, ns):
        c.core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    install = install_chart(c, sys_ns, f"scale-{suffix}", f"watchNamespaces[0]={ns}")
    op = None
    try:
        password = base64.b64encode(server.password.encode()).decode()
        c.core.create_namespaced_secret(ns, {"metadata": {"name": "redis-pass"}, "data": {"password": password}})
        if args.load == "busy":  # every queue sees the same backlog: no queue is idle
            r = redis.Redis.from_url(server.url())
            for q in ("content_generation", "validation", "export", "monitoring"):
                r.lpush(q, *[b"{}"] * 5)
        kubeconfig = token_kubeconfig(c, install, work / "operator.kubeconfig")
        op = start_operator(kubeconfig, work / "operator.log", f"--namespace={ns}",
                            env={"BOOKGEN_AUTOSCALER": "on", "BOOKGEN_RECONCILE_INTERVAL": "30"})
        spec = queue_spec(server.port)
        t0 = time.monotonic()
        for i in range(args.queues):
            c.custom.create_namespaced_custom_object("bookgen.io", "v1alpha1", ns, "bookgenqueues", {
                "apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "metadata": {"name": f"q{i:03d}"},
                "spec": spec})
        while ready_count(c, ns) < args.queues:
            if time.monotonic() - t0 > args.settle_timeout:
                print(f"only {ready_count(c, ns)} of {args.queues} queues Ready after {args.settle_timeout:.0f} s")
                return 1
            print(f"\r{ready_count(c, ns)}/{args.queues} queues Ready ({time.monotonic() - t0:.0f} s)", end="",
                  file=sys.stderr, flush=True)
            time.sleep(5)
        print(f"\nall {args.queues} queues Ready after {time.monotonic() - t0:.0f} s; settling {args.settle:.0f} s",
              file=sys.stderr)
        time.sleep(args.settle)  # the first reconciles' status writes and the scheduler's warm-up are not steady state
        user = install.username
        before, cpu0, mark, w0 = scrape(op.metrics_port), cpu_seconds(op.proc.pid), c.audit.mark(), time.monotonic()
        rss0, load0 = rss_mib(op.proc.pid), os.getloadavg()[0]
        time.sleep(args.window)
        after, cpu1, elapsed = scrape(op.metrics_port), cpu_seconds(op.proc.pid), time.monotonic() - w0
        events = [e for e in c.audit.events(mark) if e.user == user
                  and (e.stage == "ResponseComplete" if e.verb != "watch" else e.stage == "ResponseStarted")]
        polls = {k: after.get(k, 0) - before.get(k, 0) for k in ("on_time", "late", "missed")}
        total = sum(polls.values())
        pools = args.queues * len(POOLS)
        expected = pools * elapsed  # one poll per pool per second at the 1 s target (queues poll all pools at once)
        print(f"\n{args.queues} BookGenQueues x {len(POOLS)} pools, load {args.load}, window {elapsed:.0f} s")
        print(f"{'':34}{'ours':>14}{'target':>14}")
        print(f"{'queue rounds on time':34}{polls['on_time'] / max(total, 1):>13.1%}{'100.0%':>14}")
        print(f"{'  rounds late / missed':34}{polls['late']:>7.0f} /{polls['missed']:>5.0f}{'0 / 0':>14}")
        print(f"{'  rounds per queue per second':34}{total / args.queues / elapsed:>14.2f}{'1.00':>14}")
        print(f"{'API requests per pool per second':34}{len(events) / pools / elapsed:>14.4f}{'<= 0.05':>14}")
        print(f"{'operator CPU (share of one core)':34}{(cpu1 - cpu0) / elapsed:>13.1%}{'<= 100%':>14}")
        # Start and end of the window: a frozen heap (gcpauses) must not grow with cyclic garbage.
        print(f"{'operator RSS (MiB, start -> end)':34}{f'{rss0:.0f} -> {rss_mib(op.proc.pid):.0f}':>14}")
        gc_n, gc_s = after["gc_count"] - before["gc_count"], after["gc_sum"] - before["gc_sum"]
        gc_long = after["gc_over_100ms"] - before["gc_over_100ms"]
        print(f"{'GC pauses (n / s / over 100 ms)':34}{f'{gc_n:.0f} / {gc_s:.2f} / {gc_long:.0f}':>14}")
        print(f"{'GC pause p99 / longest':34}"
              f"{f'{pause_quantile(before, after, 0.99)} / {pause_quantile(before, after, 1.0)}':>24}")
        frozen = f"{before.get('gc_frozen', 0):.0f} -> {after.get('gc_frozen', 0):.0f}"
        print(f"{'frozen objects (start -> end)':34}{frozen:>14}")  # survivors frozen after start-up: it grows
        print(f"load average (1 min) at window start / end: {load0:.1f} / {os.getloadavg()[0]:.1f} "
              f"(the machine's {os.cpu_count()} CPUs also run the control plane, and whatever else is running)")
        verbs: dict[str, int] = {}
        for e in events:
            verbs[f"{e.verb} {e.resource}"] = verbs.get(f"{e.verb} {e.resource}", 0) + 1
        print("requests in the window:", ", ".join(f"{k}: {v}" for k, v in sorted(verbs.items())) or "none")
        print(f"(rounds: one per queue per poll; {expected / len(POOLS):.0f} expected at the 1 s target)")
        return 0
    finally:
        if op is not None:
            op.stop()
        c.core.delete_namespace(ns)
        try:
            uninstall_chart(c, install)
        finally:
            c.core.delete_namespace(sys_ns)
        server.stop()
        if started:
            controlplane.down()


if __name__ == "__main__":
    sys.exit(main())
