"""Why a component's pods are not running, in words, from what Kubernetes already says about them.

A Deployment only counts ready replicas; the reason a pod is not ready is on the pod (the scheduler's
PodScheduled=False condition: an unsatisfiable nodeSelector, a taint nobody tolerates, too little CPU;
a container waiting on a missing Secret or an image it cannot pull) or on the Deployment (its
ReplicaFailure condition: pods refused at creation, e.g. a PriorityClass that does not exist). These
pure functions turn that into one short sentence per component for the queue's conditions.

Only stable facts go in, so a stuck pod does not rewrite the status on every reconcile: no
timestamps, no restart counts, no back-off delays, and both image-pull states say the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bookgen_operator.core.objects import Body

COMPONENT_LABEL = "app.kubernetes.io/component"
POOL_LABEL = "bookgen.io/pool"
#: Container waiting reasons whose message names what is missing (a Secret, a key, a ConfigMap).
_CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "InvalidImageName")
_PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")
MAX_MESSAGE = 300


def owner_key(labels: Mapping[str, str]) -> str:
    """`worker/<pool>` for a worker, else the component (`redis`, `flower`, `beat`)."""
    component = labels.get(COMPONENT_LABEL, "")
    return f"worker/{labels.get(POOL_LABEL, '')}" if component == "worker" else component


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def pod_problem(pod: Body) -> str | None:
    """Why this pod does not run, or None (running, or merely starting)."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return _short(f"cannot be scheduled: {condition.get('message') or condition.get('reason') or 'unknown'}")
    for container in (*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in _CONFIG_ERRORS:
            return _short(f"container {container.get('name')}: {reason}: {waiting.get('message') or ''}".rstrip(": "))
        if reason in _PULL_ERRORS:
            return _short(f"container {container.get('name')}: cannot pull image {container.get('image')}")
        if reason == "CrashLoopBackOff":
            code = ((container.get("lastState") or {}).get("terminated") or {}).get("exitCode")
            return f"container {container.get('name')} keeps crashing" + (f" (exit code {code})" if code else "")
    return None


def pod_problems(pods: Iterable[Body]) -> dict[str, str]:
    """Owner (owner_key) -> the problem of its first stuck pod by name; pods being deleted are left out."""
    found: dict[str, str] = {}
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for pod in sorted(live, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        problem = pod_problem(pod)
        key = owner_key((pod.get("metadata") or {}).get("labels") or {})
        if problem and key not in found:
            found[key] = problem
    return found


def workload_problem(workload: Body | None) -> str | None:
    """A Deployment whose pods cannot even be created says so in its ReplicaFailure condition."""
    for condition in ((workload or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return _short(f"pods cannot be created: {condition.get('message') or condition.get('reason')}")
    return None
