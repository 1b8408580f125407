"""A stand-in for the kubelet, for benchmarks only (`scripts/cluster up --node fake`): it measures the
operator, not pods, with more pods than two cores can run (bench.operator_scale: 250-1,000 queues, four
pools each). Every test runs on the real node (node.py).

It registers Nodes and renews their Leases, moves pods bound to them to Running and Ready (the fields
kwok's pod-ready stage sets), binds claims to hostPath volumes it makes, and finishes deletions as the
kubelet does: after the grace period, a final DELETE with grace 0 and a UID precondition. Nothing runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
import time
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

LEASE_SECONDS = 40
RENEW_EVERY = 10.0
log = logging.getLogger("node-agent")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeAgent:
    def __init__(self, api: client.ApiClient, nodes: list[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.nodes = nodes
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
        ready_now = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
        if status.get("phase") == "Running" and ready_now:
            return
        self.mark_running(pod, ready=True)

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

    def finish(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace
        self.stopping.wait(min(float(grace), 1.0))  # nothing runs: a deleted pod goes almost at once
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

    def shutdown(self) -> None:
        self.stopping.set()


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
