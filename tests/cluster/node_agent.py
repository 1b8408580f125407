"""The one stand-in of the test control plane: a node agent in place of the kubelet.

It registers Nodes and renews their Leases, moves pods bound to them to Running and Ready (the
fields kwok's pod-ready stage sets), and finishes deletions as the kubelet does: once the grace
period is over (or the pod's process has exited), a final DELETE with grace 0 and a UID precondition.

Real workers: in a namespace annotated `bookgen.test/worker-redis-url: <redis URL>`, a pod labelled
`app.kubernetes.io/component: worker` runs its container command here, as a real `celery worker`
process under the pod's name (POD_NAME), against that Redis (`bookgen.test/worker-env`, a JSON
object, adds environment). Deleting the pod sends SIGTERM to that
process alone (a warm shutdown, as the kubelet does to PID 1), then SIGKILL when the grace is over.
Such pods turn Ready when the worker's heartbeat file first appears, like the readiness probe.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

WORKER_REDIS_ANNOTATION = "bookgen.test/worker-redis-url"
#: Optional JSON object of extra environment for those workers (e.g. BOOKGEN_EXTRA_TASK_MODULES).
WORKER_ENV_ANNOTATION = "bookgen.test/worker-env"
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
log = logging.getLogger("node-agent")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def heartbeat(self) -> Path:
        return self.workdir / "heartbeat"


class NodeAgent:
    def __init__(self, api: client.ApiClient, nodes: list[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.nodes = nodes
        self.workers: dict[str, WorkerProcess] = {}  # pod uid -> process
        self.finishing: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ip_seq = 10

    # -- nodes -----------------------------------------------------------------------------------

    def register(self) -> None:
        for i, name in enumerate(self.nodes):
            body = {
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                      "kubernetes.io/arch": "amd64", "bookgen.test/fake": "true"}},
            }
            try:
                self.core.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    raise
            self.patch_node_status(name, i)

    def patch_node_status(self, name: str, index: int) -> None:
        t = now()
        cond = [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake node agent is ready"},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
        ]
        for c in cond:
            c.update(lastHeartbeatTime=t, lastTransitionTime=t)
        # Room for bench/operator_scale.py: 250 queues x 4 pools of one pod each.
        capacity = {"cpu": "256", "memory": "1Ti", "pods": "1500", "ephemeral-storage": "2Ti"}
        self.core.patch_node_status(name, {"status": {
            "capacity": capacity, "allocatable": capacity, "conditions": cond,
            "addresses": [{"type": "InternalIP", "address": f"10.250.0.{index + 1}"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": client.VersionApi(self.core.api_client).get_code().git_version,
                         "architecture": "amd64", "operatingSystem": "linux", "containerRuntimeVersion": "fake://0",
                         "kernelVersion": "", "osImage": "bookgen fake node", "kubeProxyVersion": "",
                         "bootID": "", "machineID": "", "systemUUID": ""},
        }})  # fmt: skip

    def heartbeat_loop(self) -> None:
        beats = 0
        while not self.stopping.wait(RENEW_EVERY if beats else 0):
            for i, name in enumerate(self.nodes):
                try:
                    self.renew_lease(name)
                    if beats % 6 == 5:
                        self.patch_node_status(name, i)
                except Exception as e:  # keep beating through API hiccups
                    log.warning("heartbeat of %s failed: %s", name, e)
            beats += 1

    def renew_lease(self, name: str) -> None:
        body = {"metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
        try:
            self.coord.replace_namespaced_lease(name, "kube-node-lease", self._with_rv(name, body))
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    def _with_rv(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        cur = self.coord.read_namespaced_lease(name, "kube-node-lease")
        body["metadata"]["resourceVersion"] = cur.metadata.resource_version
        return body

    # -- pods ------------------------------------------------------------------------------------

    def pod_loop(self) -> None:
        rv = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    pods = self.core.list_pod_for_all_namespaces()
                    for p in pods.items:
                        self.handle(self.core.api_client.sanitize_for_serialization(p))
                    rv = pods.metadata.resource_version
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=60,
                                   _preload_content=True, allow_watch_bookmarks=True):
                    obj = ev["raw_object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.handle(obj)
                    elif ev["type"] == "DELETED":
                        self.forget(obj)
            except ApiException as e:
                if e.status == 410:
                    rv = None
                    continue
                log.warning("pod watch failed: %s", e)
                time.sleep(1)
            except Exception as e:
                log.warning("pod watch failed: %s", e)
                rv = None
                time.sleep(1)

    def handle(self, pod: dict[str, Any]) -> None:
        spec, meta, status = pod.get("spec", {}), pod["metadata"], pod.get("status", {})
        if spec.get("nodeName") not in self.nodes:
            return
        if meta.get("deletionTimestamp"):
            uid = meta["uid"]
            with self.lock:
                if uid in self.finishing:
                    return
                self.finishing.add(uid)
            threading.Thread(target=self.finish, args=(pod,), daemon=True).start()
            return
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        worker = self.maybe_start_worker(pod)
        want_ready = worker is None or worker.heartbeat.exists()
        ready_now = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
        if status.get("phase") == "Running" and ready_now == want_ready:
            return
        self.mark_running(pod, ready=want_ready)
        if not want_ready:
            threading.Thread(target=self.ready_when_heartbeat, args=(pod, worker), daemon=True).start()

    def mark_running(self, pod: dict[str, Any], ready: bool) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        t = now()
        with self.lock:
            self.ip_seq += 1
            ip = f"10.244.{self.ip_seq // 250 % 250}.{self.ip_seq % 250 + 1}"
        ip = pod.get("status", {}).get("podIP") or ip
        node_ip = f"10.250.0.{self.nodes.index(spec['nodeName']) + 1}"
        flag = "True" if ready else "False"
        started = pod.get("status", {}).get("startTime") or t
        body = {"status": {
            "phase": "Running", "hostIP": node_ip, "hostIPs": [{"ip": node_ip}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": started,
            "conditions": [{"type": c, "status": s, "lastTransitionTime": t} for c, s in (
                ("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("ContainersReady", flag),
                ("Ready", flag), ("PodScheduled", "True"))],
            "containerStatuses": [{
                "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready, "started": True,
                "restartCount": 0, "containerID": f"fake://{meta['uid']}/{c['name']}",
                "state": {"running": {"startedAt": started}}} for c in spec.get("containers", [])],
            "initContainerStatuses": [{
                "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                for c in spec.get("initContainers", [])],
        }}  # fmt: skip
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("status of %s/%s: %s", meta["namespace"], meta["name"], e)

    def ready_when_heartbeat(self, pod: dict[str, Any], worker: WorkerProcess) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.proc.poll() is None and not self.stopping.is_set():
            if worker.heartbeat.exists():
                self.mark_running(pod, ready=True)
                return
            time.sleep(0.2)

    def finish(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        with self.lock:
            worker = self.workers.pop(meta["uid"], None)
        if worker is not None:
            stop_worker(worker, grace)
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0,
                                            body={"preconditions": {"uid": meta["uid"]}, "gracePeriodSeconds": 0})
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("final delete of %s/%s: %s", meta["namespace"], meta["name"], e)
                with self.lock:
                    self.finishing.discard(meta["uid"])

    def forget(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            self.finishing.discard(uid)
            worker = self.workers.pop(uid, None)
        if worker is not None:
            stop_worker(worker, 0)

    # -- volumes: a provisioner of hostPath volumes, so StatefulSets with claims get scheduled ----

    def volume_loop(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                for pvc in self.core.list_persistent_volume_claim_for_all_namespaces().items:
                    if pvc.status.phase == "Pending" and not pvc.spec.volume_name:
                        self.provision(pvc)
            except Exception as e:
                log.warning("volume provisioning failed: %s", e)

    def provision(self, pvc: Any) -> None:
        meta = pvc.metadata
        body = {"metadata": {"name": f"pv-{meta.uid}", "labels": {"bookgen.test/provisioned": "true"}},
                "spec": {"capacity": {"storage": pvc.spec.resources.requests.get("storage", "1Gi")},
                         "accessModes": pvc.spec.access_modes or ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Delete",
                         "storageClassName": pvc.spec.storage_class_name or "",
                         "hostPath": {"path": f"/tmp/bookgen-fake-pv/{meta.uid}", "type": "DirectoryOrCreate"},
                         "claimRef": {"namespace": meta.namespace, "name": meta.name, "uid": meta.uid}}}
        try:
            self.core.create_persistent_volume(body)
            log.info("provisioned a volume for %s/%s", meta.namespace, meta.name)
        except ApiException as e:
            if e.status != 409:
                raise

    # -- real workers ----------------------------------------------------------------------------

    def maybe_start_worker(self, pod: dict[str, Any]) -> WorkerProcess | None:
        meta = pod["metadata"]
        if meta.get("labels", {}).get("app.kubernetes.io/component") != "worker":
            return None
        with self.lock:
            if meta["uid"] in self.workers:
                return self.workers[meta["uid"]]
        try:
            ns = self.core.read_namespace(meta["namespace"])
        except ApiException:
            return None
        annotations = ns.metadata.annotations or {}
        redis_url = annotations.get(WORKER_REDIS_ANNOTATION)
        if not redis_url:
            return None
        container = pod["spec"]["containers"][0]
        workdir = Path(tempfile.mkdtemp(prefix=f"pod-{meta['name']}-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BOOKGEN_"))}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        env.update(
            POD_NAME=meta["name"], POD_NAMESPACE=meta["namespace"], REDIS_URL=redis_url,
            BOOKGEN_HEARTBEAT_FILE=str(workdir / "heartbeat"), BOOKGEN_OUTPUT_DIR=str(workdir / "output"),
            BOOKGEN_METRICS_PORT="off", HOME=str(workdir),
        )  # fmt: skip
        env.pop("REDIS_PASSWORD", None)
        env.update(json.loads(annotations.get(WORKER_ENV_ANNOTATION, "{}")))
        # In a pod the host name is the pod's name: celery's %h must expand to it, not to this machine's.
        argv = [a.replace("%h", meta["name"]) for a in (*container.get("command", []), *container.get("args", []))]
        exe = shutil.which(argv[0], path=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
        logf = open(workdir / "worker.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([exe or argv[0], *argv[1:]], env=env, cwd=workdir, stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        w = WorkerProcess(proc, workdir)
        with self.lock:
            self.workers[meta["uid"]] = w
        log.info("started worker pid %d for pod %s/%s", proc.pid, meta["namespace"], meta["name"])
        return w

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for w in workers:
            stop_worker(w, 10)


def stop_worker(w: WorkerProcess, grace: float) -> None:
    """SIGTERM to the worker's main process only (warm shutdown), SIGKILL to its group when the grace ends."""
    if w.proc.poll() is None:
        w.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=max(grace, 0.1))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(w.proc.pid, signal.SIGKILL)
    w.proc.wait()
    shutil.rmtree(w.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fake node agent for the test control plane")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node", action="append", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api = config.new_client_from_config(args.kubeconfig)
    agent = NodeAgent(api, args.node)
    signal.signal(signal.SIGTERM, lambda *_: (agent.shutdown(), sys.exit(0)))
    agent.register()
    threading.Thread(target=agent.heartbeat_loop, daemon=True).start()
    threading.Thread(target=agent.volume_loop, daemon=True).start()
    log.info("nodes %s registered", ", ".join(args.node))
    agent.pod_loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
