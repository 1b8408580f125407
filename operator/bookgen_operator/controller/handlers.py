"""kopf registrations: glue from events and timers of BookGenQueues (and their children) to the reconciler.

`registry(config)` registers every handler in a registry of its own, with the intervals of that config,
and main runs kopf with it and the OperatorContext as `memo` (nothing registers at import). A
reconcile (reconciler.py) runs on create/resume/spec update, on a timer (drift repair and status
refresh), and when a managed Deployment or StatefulSet changes or disappears (immediate repair, fresh
readiness); the autoscaler daemon (daemon.py) runs alongside for as long as the queue exists.

Deletion relies on owner references: every child (Secrets included) is owned by the queue, in
its namespace, so the API server's garbage collector removes them; the (optional, finalizer-free)
deletion handler only forgets the queue's in-memory state. The only finalizer is kopf's own
(`bookgen.io/finalizer`), which kopf adds because the queue has a timer and a daemon: it lets kopf
stop them before the object goes, then releases it. Redis data volumes (StatefulSet claims) are kept
(`Retain`), on purpose; children no longer desired are pruned by children.apply_children.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any

import httpx
import kopf

from bookgen_operator.controller import daemon, gcpauses, opmetrics
from bookgen_operator.controller.children import MONITORING_GROUP
from bookgen_operator.controller.client import KubeError
from bookgen_operator.controller.config import OperatorConfig
from bookgen_operator.controller.context import OperatorContext, plain
from bookgen_operator.controller.reconciler import BGQ, in_backoff, reconcile
from bookgen_operator.core.objects import Body
from bookgen_operator.core.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

MANAGED_BY = MappingProxyType({"app.kubernetes.io/managed-by": "bookgen-operator"})
#: The children kopf watches for us, selected by the API server (settings.watching.label_selectors):
#: the `labels=` filter of a handler runs in kopf, after it has listed and cached every object.
CHILD_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
#: Watched to reconcile at once when they change, and for the cache.
CHILD_RESOURCES = (("apps", "v1", "deployments"), ("apps", "v1", "statefulsets"))
#: Watched for the cache only. The monitoring kinds exist only with the prometheus-operator's CRDs: kopf
#: watches them once the CRDs appear (it watches CRDs), and until then the reconciles do not ask for them.
CACHED_RESOURCES = (("", "v1", "services"), ("policy", "v1", "poddisruptionbudgets"),
                    ("networking.k8s.io", "v1", "networkpolicies"), (MONITORING_GROUP, "v1", "servicemonitors"),
                    (MONITORING_GROUP, "v1", "prometheusrules"))
#: Whose watches carry CHILD_SELECTOR on the server (bench.watch_memory's baseline leaves the first two out).
SERVER_SELECTED = CHILD_RESOURCES + CACHED_RESOURCES


def registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler of the operator, in a registry of its own with this config's timer interval."""
    reg = kopf.OperatorRegistry()
    kopf.on.startup(registry=reg)(configure)
    kopf.on.login(registry=reg)(login)
    kopf.on.cleanup(registry=reg)(close)
    for on_queue in (kopf.on.resume(GROUP, VERSION, PLURAL, registry=reg),
                     kopf.on.create(GROUP, VERSION, PLURAL, registry=reg),
                     kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=reg)):
        on_queue(queue_changed)
    interval = config.reconcile_interval
    kopf.timer(GROUP, VERSION, PLURAL, interval=interval, initial_delay=interval, registry=reg)(queue_timer)
    kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10, registry=reg)(daemon.autoscaler)
    kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=reg)(queue_deleted)
    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, labels=MANAGED_BY, registry=reg)(child_changed)
    for group, version, plural in CACHED_RESOURCES:
        if group:
            kopf.on.event(group, version, plural, labels=MANAGED_BY, registry=reg)(child_seen)
        else:  # the core group: kopf takes (version, plural)
            kopf.on.event(version, plural, labels=MANAGED_BY, registry=reg)(child_seen)
    return reg


async def configure(settings: kopf.OperatorSettings, memo: OperatorContext, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 600
    settings.persistence.finalizer = "bookgen.io/finalizer"  # only used if a deletion handler ever appears
    if memo.config.metrics_port:
        opmetrics.start_server(memo.config.metrics_port)
    gcpauses.measure()
    gcpauses.settle()
    # kopf warns about handlers of kinds the cluster does not serve; ours are optional (no prometheus-operator).
    logging.getLogger("kopf._core.reactor.observation").addFilter(_optional_kinds_unresolved)
    for group, version, plural in SERVER_SELECTED:
        settings.watching.label_selectors[(group, version, plural) if group else (version, plural)] = CHILD_SELECTOR


def _optional_kinds_unresolved(record: logging.LogRecord) -> bool:
    """False for kopf's "Unresolved resources" warning when it names only the optional monitoring kinds."""
    message = record.getMessage()
    if not message.startswith("Unresolved resources cannot be served"):
        return True
    named = message.partition(":")[2].split(",")
    return not all(MONITORING_GROUP in name for name in named)


def login(memo: OperatorContext, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else kubeconfig; BOOKGEN_KUBE_SERVER (e.g. `kubectl proxy`) for dev/tests."""
    info: kopf.ConnectionInfo | None
    if memo.config.kube_server:
        info = kopf.ConnectionInfo(server=memo.config.kube_server)
    else:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    memo.connection.info = info
    return info


async def close(memo: OperatorContext, **_: Any) -> None:
    await memo.kube.close()


#: Seconds before kopf retries a reconcile the API server refused for a passing reason.
NOT_YET_KNOWN_RETRY = 5.0


async def queue_changed(body: kopf.Body, reason: str, memo: OperatorContext, **_: Any) -> None:
    try:
        await reconcile(memo, body, str(reason))
    except KubeError as exc:
        if exc.code == 403 and "cannot find RESTMapping" in exc.message:
            # Seen on a real API server right after the CRD is installed: its owner-reference admission
            # does not know the new kind for some 20 s and refuses our children. Passing, and nothing the
            # user did: one line and a retry, not a traceback.
            raise kopf.TemporaryError(
                f"the API server does not know the BookGenQueue kind yet (was the CRD just installed?); "
                f"retrying in {NOT_YET_KNOWN_RETRY:.0f}s", delay=NOT_YET_KNOWN_RETRY) from None
        raise


async def queue_timer(body: kopf.Body, memo: OperatorContext, **_: Any) -> None:
    """Drift repair and status refresh; silent while a problem waits for the user or its backoff."""
    if in_backoff(memo, body):
        return
    try:
        await reconcile(memo, body, "timer")
    except (kopf.PermanentError, kopf.TemporaryError) as exc:  # already reported in status
        log.info("timer reconcile of %s: %s", body["metadata"]["name"], exc)


def _track_worker_replicas(ctx: OperatorContext, body: Body, type: str | None) -> None:
    """Feed the autoscaler's replica cache from this watch, so its polls read no Deployment."""
    meta = body.get("metadata", {})
    if body.get("kind") != "Deployment" or (meta.get("labels") or {}).get("app.kubernetes.io/component") != "worker":
        return
    if type == "DELETED":
        ctx.replicas.gone(meta["namespace"], meta["name"])
    else:
        ctx.replicas.seen(meta["namespace"], meta["name"], (body.get("spec") or {}).get("replicas"))


def _track_child(ctx: OperatorContext, body: Body, type: str | None) -> None:
    """Keep the reconciles' view of the children (child_cache) from kopf's watches."""
    meta = body.get("metadata", {})
    if type == "DELETED":
        ctx.children.gone(meta.get("namespace", ""), body.get("apiVersion", ""), body.get("kind", ""),
                          meta.get("name", ""), meta.get("resourceVersion"))
    else:
        ctx.children.seen(plain(body))


async def child_seen(body: kopf.Body, type: str | None, memo: OperatorContext, **_: Any) -> None:
    """A managed Service, PodDisruptionBudget or NetworkPolicy changed: only the cache needs to know (the
    timer reconcile repairs them, as before)."""
    _track_child(memo, body, type)


async def child_changed(body: kopf.Body, type: str | None, memo: OperatorContext, **_: Any) -> None:
    """A managed Deployment/StatefulSet changed or vanished: reconcile its queue at once."""
    _track_worker_replicas(memo, body, type)
    _track_child(memo, body, type)
    if type is None:  # the initial listing: the queue's own resume handler covers it
        return
    owners = [ref for ref in body.get("metadata", {}).get("ownerReferences") or []
              if ref.get("kind") == "BookGenQueue" and ref.get("apiVersion", "").startswith(GROUP + "/")]
    for ref in owners:
        queue = await memo.kube.get(BGQ, body["metadata"]["namespace"], ref["name"])
        if queue is None or queue["metadata"]["uid"] != ref.get("uid") or in_backoff(memo, queue):
            continue
        if queue["metadata"].get("deletionTimestamp"):
            continue
        try:
            await reconcile(memo, queue, "child")
        except (kopf.PermanentError, kopf.TemporaryError, KubeError, httpx.HTTPError) as exc:
            # already in status, or the API is unreachable: the timer reconciles again later
            log.info("child-triggered reconcile of %s: %s", ref["name"], exc)


async def queue_deleted(body: kopf.Body, memo: OperatorContext, **_: Any) -> None:
    """Forget the queue's in-memory state (its children go with the garbage collector)."""
    memo.forget(body["metadata"]["uid"])
    memo.children.forget(body["metadata"]["namespace"], body["metadata"]["name"])
