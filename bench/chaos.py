"""The chaos run (issue 26): whole books on one queue of the real node while a seeded schedule of faults
hits it; did every book complete, was anything lost or run twice?

    python -m tests.cluster.controlplane up --bin ... --node-bin ... --images ...   # a real node, up first
    python -m bench.chaos --seeds 1,2,3           # or --seed N; --books, --chapters, --chapter-seconds

Per seed: a fresh BookGenQueue (its own namespace) under the chart's operator (two replicas, installed
once per run), content pool of three workers running slow offline chapters (`BOOKGEN_OFFLINE_SECONDS`),
autoscaling off so the pods a fault removes are replaced by their ReplicaSet, and short worker limits
(time limit 30 s, visibility timeout 45 s) so that a task whose worker was killed comes back within the
run, not after the default two hours. The books are submitted with the `bookgen` CLI; then
chaos_faults.schedule(seed) applies its faults while they run; then the run waits for every book to end.

Reported per seed: books completed/submitted; tasks lost (steps of the books never done); tasks run
twice (task ids started more than once, from the workers' task events, chaos_watch.Ledger) against the
kills of busy workers (each `worker-kill` whose pod was running a task when it was deleted); dead
letters; the longest stall (no book advanced); every fault with its time; and how long the event
receiver was blind (Redis pod away), during which a second start would not be seen. The workers' own
counter of chapters succeeded (kept in Redis) is printed as a cross-check: above the chapters
submitted, a chapter succeeded twice.
"""

from __future__ import annotations

import argparse
import copy
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import chaos_faults as faults  # noqa: E402
from bench.chaos_watch import Ledger, Progress, TaskSeen, netns_thread  # noqa: E402
from tests.cluster import controlplane, monitoring_crds, operator_pods  # noqa: E402
from tests.cluster.audit import AuditLog  # noqa: E402
from tests.cluster.conftest import Cluster, kubectl, wait_established  # noqa: E402
from tests.cluster.netcheck import in_netns  # noqa: E402
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

CHAPTER = "bookgen.generate_chapter"
TASK_EVENTS = {"name": "BOOKGEN_TASK_EVENTS", "value": "true"}
SUBJECTS = ("Ada Lovelace", "Grace Hopper", "Hedy Lamarr", "Katherine Johnson", "Alan Turing", "Emmy Noether")
#: Kept small so that filling it is quick on a shared machine; a user's setting (spec.redis.maxmemory).
MAXMEMORY = "48Mi"


def chapter_starts(queue: Queue) -> float:
    """celery_task_started_total of the chapters, over every worker: counted by the workers themselves
    in Redis (flushed each second), so it needs no event receiver; a start less than a second before
    a SIGKILL may be missing from it."""
    total = 0.0
    for line in queue.metrics().splitlines():
        if line.startswith("celery_task_started_total{") and f'name="{CHAPTER}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def connect() -> Cluster:
    from kubernetes import client, config

    d = controlplane.state_dir()
    st = controlplane.State.load(d)
    if not (st and st.node == "real" and controlplane.healthy(d, st)):
        raise SystemExit(f"no healthy real-node cluster in {d}: start one (python -m tests.cluster.controlplane up)")
    api = config.new_client_from_config(str(controlplane.kubeconfig_path(d)))
    c = Cluster(d, controlplane.kubeconfig_path(d), api, AuditLog(d / "audit.log"),
                client.VersionApi(api).get_code().git_version, st)
    kubectl(c, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in monitoring_crds.crd_files():
        kubectl(c, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    wait_established(c, "bookgenqueues.bookgen.io", *[f"{k}.monitoring.coreos.com" for k in monitoring_crds.KINDS])
    return c


def queue_spec(chapter_seconds: float) -> dict[str, Any]:
    from bookgen_operator.core.spec.defaults import DEFAULT_POOLS

    pools = copy.deepcopy(DEFAULT_POOLS)
    for pool in pools:
        if pool["name"] == "content":
            pool.update({"concurrency": 1, "minReplicas": 3, "maxReplicas": 3,
                         "env": [{"name": "BOOKGEN_OFFLINE_SECONDS", "value": str(chapter_seconds)}]})
    return {"env": [TASK_EVENTS], "autoscaling": {"enabled": False}, "pools": pools,
            "worker": {"softTimeLimitSeconds": 20, "timeLimitSeconds": 30, "visibilityTimeoutSeconds": 45},
            "redis": {"maxmemory": MAXMEMORY}}


@dataclass
class Result:
    seed: int
    books: int
    completed: int = 0
    lost: int = 0
    twice: int = 0
    succeeded_twice: int = 0
    requeued_full: int = 0
    busy_kills: int = 0
    dead: int = 0
    stall: float = 0.0
    blind: float = 0.0
    counted: float = 0.0
    chapter_starts: float = 0.0
    chapters: int = 0
    seconds: float = 0.0
    applied: list[faults.Applied] = field(default_factory=list)
    twice_detail: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    dead_detail: list[str] = field(default_factory=list)
    job_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.completed == self.books and self.lost == 0 and self.twice <= self.busy_kills and self.dead == 0


def rejected(seen: TaskSeen, full: list[tuple[float, float]]) -> int:
    """Runs that ended rejected (and requeued) while Redis was full: a task whose own write a full Redis
    refused (its writes are one transaction, refused whole, so that run left nothing behind;
    tasks/base.py) goes back to its queue and runs again. Not a second run of its work: counted apart,
    as requeued at a full Redis. A rejection outside the full windows counts as a run."""
    return sum(1 for kind, _, t in seen.ends if kind == "task-rejected" and any(a <= t <= b for a, b in full))


class Run:
    """One seed: a queue, its books, the faults, and what the watchers saw."""

    def __init__(self, c: Cluster, op: operator_pods.OperatorPods, seed: int, args: argparse.Namespace) -> None:
        self.c, self.op, self.seed, self.args = c, op, seed, args
        self.queue = Queue(c, restricted_namespace(c, f"chaos-{seed}"), "chaos")
        self.result = Result(seed, args.books, chapters=args.books * args.chapters)
        self.extra_jobs: list[str] = []

    # -- set-up ---------------------------------------------------------------------------------------

    def redis_url(self) -> str:
        ip = self.c.core.read_namespaced_service(f"{self.queue.name}-redis", self.queue.namespace).spec.cluster_ip
        return f"redis://:{self.queue.secret('redis', 'password')}@{ip}:6379/0"

    def settings(self) -> Any:
        from bookgen_worker.config import settings_from_env

        return settings_from_env({"REDIS_URL": self.redis_url()})

    def start(self) -> None:
        q = self.queue
        q.create(queue_spec(self.args.chapter_seconds))
        q.wait_ready(timeout=300)
        wait_for(lambda: len([p for p in q.pods("content") if ready(p)]) == 3, timeout=180, interval=1,
                 what="three ready content workers")
        self.ledger = Ledger(self.c.sandbox.netns_path, self.redis_url())
        self.ledger.start()
        if not self.ledger.connected.wait(90):
            raise RuntimeError("no worker event reached the ledger in 90 s (BOOKGEN_TASK_EVENTS?)")
        self.counted_before = q.counted("succeeded", CHAPTER)
        self.starts_before = chapter_starts(q)
        with q.redis_port() as port:
            self.jobs = [q.submit(port, SUBJECTS[i % len(SUBJECTS)], "--chapters", str(self.args.chapters),
                                  "--parallel", "3", "--formats", "md") for i in range(self.args.books)]
        log(f"seed {self.seed}: {len(self.jobs)} books of {self.args.chapters} chapters submitted to "
            f"{q.namespace}/{q.name}")
        from bookgen_worker.jobs import store

        settings = self.settings()
        self.progress = Progress(self.c.sandbox.netns_path, lambda j: store.get_job(settings, j), self.jobs)
        self.progress.start()

    # -- the faults -----------------------------------------------------------------------------------

    def apply(self, fault: faults.Fault) -> faults.Applied:
        core, ns, name = self.c.core, self.queue.namespace, self.queue.name
        done = faults.Applied(fault, time.time())
        t = time.monotonic()
        if fault.kind in ("worker-grace", "worker-kill"):
            picked = faults.pick_worker(core, ns, name, fault, lambda host: self.ledger.busy_at(host, time.time()))
            if picked is None:
                done.note = "no running worker pod to hit"
                return done
            pool, pod = picked
            done.target, done.started = f"{pool}@{pod}", time.time()
            done.busy = self.ledger.busy_at(done.target, done.started)
            faults.delete_pod(core, ns, pod, 0 if fault.kind == "worker-kill" else None)
        elif fault.kind == "redis-pod":
            (pod,) = [p.metadata.name for p in core.list_namespaced_pod(
                ns, label_selector=f"app.kubernetes.io/instance={name},app.kubernetes.io/component=redis").items
                if p.metadata.deletion_timestamp is None] or ["(none)"]
            done.target = pod
            faults.delete_pod(core, ns, pod, None)
        elif fault.kind == "operator-leader":
            leader = self.op.leader()
            done.target = leader or "(no leader)"
            if leader:
                faults.delete_pod(core, self.op.chart.namespace, leader, 0)
        elif fault.kind == "kubelet-restart":
            done.target = "kubelet"
            done.note = f"healthy again after {controlplane.restart_kubelet():.1f} s"
        elif fault.kind == "redis-full":
            done.target = f"{name}-redis"
            self.background.append(netns_thread(self.c.sandbox.netns_path, "chaos-fill",
                                                lambda: self._fill(done)))
        done.seconds = time.monotonic() - t
        return done

    def _fill(self, done: faults.Applied) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url(), socket_timeout=10, socket_connect_timeout=5)

        def submit() -> None:
            # The `bookgen` CLI as a user runs it, started inside the cluster's namespace (nsenter) so it
            # reaches the Service's address directly: a port-forward is one more thing to fail here.
            bookgen = str(Path(sys.executable).parent / "bookgen")
            argv = self.c.sandbox.argv([bookgen, "submit", "Chaos Full", "--chapters", "1", "--formats", "md",
                                        "--redis-url", self.redis_url()])
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            if out.returncode == 0:
                self.extra_jobs.append(out.stdout.strip())
            else:
                raise RuntimeError(out.stderr.strip() or f"exit {out.returncode}")

        t = time.monotonic()
        done.note = faults.fill_redis(client, submit)
        done.seconds = time.monotonic() - t

    def run_faults(self) -> None:
        self.background: list[threading.Thread] = []
        self.t0 = time.time()
        for fault in faults.schedule(self.seed, self.args.window):
            while time.time() < self.t0 + fault.at:
                time.sleep(min(0.2, self.t0 + fault.at - time.time()))  # the schedule's clock, not a sync
            done = self.apply(fault)
            self.result.applied.append(done)
            busy = f", busy with {len(done.busy)} task(s)" if done.busy else ""
            log(f"seed {self.seed} t={done.started - self.t0:5.1f}s {fault.kind} {done.target}{busy} {done.note}")

    # -- the end --------------------------------------------------------------------------------------

    def finish(self) -> Result:
        deadline = time.monotonic() + self.args.deadline
        next_report = 0.0
        while not self.progress.all_finished() and time.monotonic() < deadline:
            if time.monotonic() >= next_report:
                done, total = self.progress.done_steps()
                log(f"seed {self.seed}: steps {done}/{total}, tasks seen {len(self.ledger.snapshot())}, "
                    f"longest stall so far {self.progress.longest_stall:.0f} s")
                next_report = time.monotonic() + 10
            time.sleep(1)  # the report's cadence; the condition is checked each second
        for thread in self.background:
            thread.join(timeout=180)
        self.progress.stop()
        r = self.result
        r.seconds = time.time() - self.t0
        states = {j: s for j, (s, _, _) in self.progress.last.items()}
        r.completed = sum(1 for s in states.values() if s == "COMPLETED")
        r.lost = sum(t - c for _, c, t in self.progress.last.values()) + (len(self.jobs) - len(states))
        r.stall = self.progress.longest_stall
        # Late events (a worker flushing its buffer after Redis came back) arrive for a few seconds more.
        time.sleep(5)
        self.ledger.stop()
        r.blind = self.ledger.blind_seconds(time.time())
        # Workers still running at the end that the receiver has not heard from lately (their heartbeat
        # event comes every 2 s): their events stopped reaching Redis (seen after a Redis pod restart).
        live = {f"{p.metadata.labels.get('bookgen.io/pool')}@{p.metadata.name}" for p in self.queue.pods()
                if p.metadata.deletion_timestamp is None and ready(p) and "bookgen.io/pool" in p.metadata.labels}
        r.silent = sorted(h for h in live if time.time() - self.ledger.heard.get(h, 0.0) > 20)
        tasks = self.ledger.snapshot()
        for uuid, seen in tasks.items():
            if len(seen.starts) > 1:
                r.twice_detail.append(f"{seen.name or '?'}[{uuid[:8]}] started on "
                                      + ", ".join(f"{h} at {t - self.t0:.1f}s" for h, t in seen.starts)
                                      + f"; ended {[k for k, _, _ in seen.ends]}")
        full = [(a.started, a.started + a.seconds + 5) for a in r.applied if a.fault.kind == "redis-full"]
        r.requeued_full = sum(rejected(s, full) for s in tasks.values())
        r.twice = sum(1 for s in tasks.values() if len(s.starts) - rejected(s, full) > 1)
        r.succeeded_twice = sum(1 for s in tasks.values() if sum(k == "task-succeeded" for k, _, _ in s.ends) > 1)
        for a in r.applied:
            if a.fault.kind == "worker-kill" and a.target:
                a.busy = sorted(set(a.busy) | set(self.ledger.busy_at(a.target, a.started)))
        r.busy_kills = sum(1 for a in r.applied if a.fault.kind == "worker-kill" and a.busy)
        from bookgen_worker import deadletter

        settings = self.settings()
        dead = in_netns(self.c.sandbox.netns_path, lambda: deadletter.entries(settings), timeout=30)
        r.dead = len(dead)
        r.dead_detail = [f"{d.task_name}[{d.task_id[:8]}] at {d.failed_at - self.t0:.1f}s after {d.attempts} "
                         f"attempt(s): {d.exception_type}: {d.exception_message[:160]}" for d in dead]
        from bookgen_worker.jobs import store

        unfinished = [j for j, (s, _, _) in self.progress.last.items() if s != "COMPLETED"]
        records = in_netns(self.c.sandbox.netns_path, lambda: [store.get_job(settings, j) for j in unfinished],
                           timeout=30)
        r.job_errors = [f"{j.id[:8]} {j.state}: chapters failed {j.chapters_failed}, {j.status}; {list(j.errors)[:3]}"
                        for j in records]
        r.counted = self.queue.counted("succeeded", CHAPTER) - self.counted_before
        r.extra = list(self.extra_jobs)
        r.chapter_starts = chapter_starts(self.queue) - self.starts_before
        return r

    def close(self) -> None:
        delete_queue_and_namespace(self.c, self.queue)


def report(r: Result) -> None:
    print(f"\n== seed {r.seed}: {'PASS' if r.ok else 'FAIL'} ({r.seconds:.0f} s from submission to the end)")
    print(f"   books completed {r.completed}/{r.books} | tasks lost {r.lost} | run twice {r.twice} "
          f"(succeeded twice {r.succeeded_twice}; requeued at a full Redis {r.requeued_full}) | "
          f"busy-worker kills {r.busy_kills} | dead letters {r.dead} | longest stall {r.stall:.0f} s | "
          f"event receiver blind {r.blind:.0f} s | chapters succeeded / started, counted by the workers: "
          f"{r.counted:.0f} / {r.chapter_starts:.0f} (chapters submitted {r.chapters}, in extra jobs {len(r.extra)})")
    for a in r.applied:
        busy = f" (busy: {len(a.busy)} task)" if a.busy else ""
        print(f"   t={a.fault.at:5.1f}s {a.fault.kind:16} {a.target}{busy} {a.note}")
    if r.silent:
        print(f"   running workers whose events stopped (none heard for 20 s at the end): {r.silent}")
    if r.extra:
        print(f"   jobs accepted while Redis was full (not in the books): {r.extra}")
    for line in r.dead_detail:
        print(f"   dead letter: {line}")
    for line in r.job_errors:
        print(f"   book not completed: {line}")
    for line in r.twice_detail:
        print(f"   twice: {line}")


def table(results: list[Result]) -> None:
    print("\n| seed | books completed | tasks lost | run twice | busy-worker kills | dead letters | longest stall (s) "
          "| requeued at full Redis | faults | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        kinds = ", ".join(f"{a.fault.kind}@{a.fault.at:.0f}s" for a in r.applied)
        print(f"| {r.seed} | {r.completed}/{r.books} | {r.lost} | {r.twice} | {r.busy_kills} | {r.dead} | "
              f"{r.stall:.0f} | {r.requeued_full} | {kinds} | {'pass' if r.ok else 'FAIL'} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1, help="one seed (default 1)")
    p.add_argument("--seeds", help="several, comma-separated (overrides --seed)")
    p.add_argument("--books", type=int, default=4)
    p.add_argument("--chapters", type=int, default=8)
    p.add_argument("--chapter-seconds", type=float, default=8.0, help="BOOKGEN_OFFLINE_SECONDS of the content pool")
    p.add_argument("--window", type=float, default=90.0, help="seconds over which the faults are spread")
    p.add_argument("--deadline", type=float, default=420.0, help="seconds after the last fault for the books to end")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    # SIGTERM (stopping a run by its PID) unwinds like Ctrl-C: the queue, the operator and their
    # namespaces are removed by the `finally` blocks below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    c = connect()
    system = restricted_namespace(c, "chaos-system")
    chart = operator_pods.install(c, system, "bookgen-operator")
    results: list[Result] = []
    try:
        op = operator_pods.start(c, chart, env={"BOOKGEN_AUTOSCALER": "on"})
        for seed in seeds:
            run = Run(c, op, seed, args)
            try:
                run.start()
                run.run_faults()
                results.append(run.finish())
                report(results[-1])
            finally:
                run.close()
            wait_for(lambda: len(op.pods()) == 2 and op.leader() is not None, timeout=120, interval=1,
                     what="two operator replicas, one leading")
        op.stop()
    finally:
        operator_pods.uninstall(c, chart)
        c.core.delete_namespace(system)
    table(results)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
