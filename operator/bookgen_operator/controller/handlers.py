"""kopf registrations: glue from events and timers of BookGenQueues (and their children) to the core.

One reconcile = parse the spec -> ensure generated Secrets -> desired children -> compare with
the API server -> create/patch only what differs -> status. It runs on create/resume/spec update,
on a timer (drift repair and status refresh), and when a managed Deployment or StatefulSet
changes or disappears (immediate repair, fresh readiness). Runs of one queue never overlap: a
trigger during a run marks the queue dirty and the run repeats once with a fresh body.

Failure policy (never a hot loop, never a crash):
- invalid spec -> Ready=False/InvalidSpec with the parser's message; no retry until the spec changes;
- a referenced Secret is missing -> Ready=False/SecretNotFound; retried with backoff (>= 30 s);
- API errors -> kopf retries the handler with its own backoff; the timer tries again later
  (429/503 with Retry-After are waited out inside kube.py first, never reported in status).

Deletion relies on owner references: every child (Secrets included) is owned by the queue, in
its namespace, so the API server's garbage collector removes them; the (optional, finalizer-free)
deletion handler only forgets the queue's in-memory state. The only finalizer is kopf's own
(`bookgen.io/finalizer`), which kopf adds because the queue has a timer and a daemon: it lets kopf
stop them before the object goes, then releases it. Redis data volumes (StatefulSet claims) are kept
(`Retain`), on purpose; children no longer desired are pruned by children.apply_children.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
import kopf

from bookgen_operator.controller import (
    daemon,  # noqa: F401  (registers the daemon)
    events,
    opmetrics,
)
from bookgen_operator.controller.child_cache import RESYNC_SECONDS
from bookgen_operator.controller.children import MONITORING_GROUP, apply_children
from bookgen_operator.controller.client import RESOURCES, KubeError, decoded, ensure_secret
from bookgen_operator.controller.context import (
    CHILDREN,
    CONNECTION,
    KUBE,
    SECRET_RETRY_SECONDS,
    STATES,
    QueueState,
    plain,
)
from bookgen_operator.core.reconcile import adopt
from bookgen_operator.core.spec import GROUP, PLURAL, VERSION, QueueSpec, SpecError, parse_queue
from bookgen_operator.core.spec.operator_defaults import OperatorDefaults
from bookgen_operator.core.status import (
    Condition,
    component_conditions,
    deployment_state,
    desired_status,
    now_iso,
    status_patch,
)

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "bookgen-operator"}
RECONCILE_INTERVAL = float(os.environ.get("BOOKGEN_RECONCILE_INTERVAL", "30"))
#: kopf's reasons for a reconcile that comes from the spec (and its first sight of a queue): those act on
#: LISTs and re-read Secrets; the timer and child events use what the watches and earlier checks saw.
SPEC_TRIGGERS = ("create", "update", "resume")
DISCOVERY_TTL = float(os.environ.get("BOOKGEN_DISCOVERY_TTL", "60"))
#: Where the operator's own pod runs (the chart sets it from the downward API); each Redis admits it.
OPERATOR_NAMESPACE = os.environ.get("POD_NAMESPACE") or None
BGQ = RESOURCES[(f"{GROUP}/{VERSION}", "BookGenQueue")]


_discovery: tuple[float, frozenset[str]] = (0.0, frozenset())


class MissingSecret(Exception):
    """A Secret the spec references does not exist (or lacks a key)."""


# ---------------------------------------------------------------- the reconcile


async def _ensure_secrets(spec: QueueSpec, body: Mapping[str, Any]) -> list[str]:
    """Create generated Secrets once (stable passwords); check that referenced ones exist with their
    keys. Returns the names of the Secrets created now."""
    from bookgen_operator.core.resources.secrets import generated_secrets

    created: list[str] = []
    for secret in generated_secrets(spec):
        _, was_created = await ensure_secret(KUBE, adopt(secret, body))
        if was_created:
            created.append(secret["metadata"]["name"])
    checks: list[tuple[str, tuple[str, ...], str]] = []  # (secret, keys, what for)
    if not spec.redis_secret_generated:
        checks.append((spec.redis_secret_name, (spec.redis.password_secret_key,),
                       "the Redis password (spec.redis.passwordSecretRef)"))
    if spec.flower.enabled and not spec.flower_secret_generated:
        checks.append((spec.flower_secret_name, ("username", "password"),
                       "Flower's basic auth (spec.flower.authSecretRef)"))
    for name, keys, what in checks:
        secret = await KUBE.get(RESOURCES[("v1", "Secret")], spec.namespace, name)
        if secret is None:
            raise MissingSecret(f"Secret {spec.namespace}/{name} for {what} does not exist; create it")
        missing = [k for k in keys if decoded(secret, k) is None]
        if missing:
            raise MissingSecret(f"Secret {spec.namespace}/{name} for {what} has no key {', '.join(missing)}")
    return created


async def _api_groups() -> frozenset[str]:
    global _discovery
    fetched_at, groups = _discovery
    if time.monotonic() - fetched_at > DISCOVERY_TTL or not fetched_at:
        groups = frozenset(await KUBE.api_groups())
        _discovery = (time.monotonic(), groups)
    return groups


def _desired(
    spec: QueueSpec, body: Mapping[str, Any], groups: frozenset[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every child, adopted; and the monitoring objects asked for ("always") that cannot exist here."""
    from bookgen_operator.core.resources import desired_objects, monitoring_objects

    present = MONITORING_GROUP in groups
    monitoring = monitoring_objects(spec, present)
    impossible = [] if present else [f"{o['kind']} {o['metadata']['name']}" for o in monitoring]
    objects = desired_objects(spec, OPERATOR_NAMESPACE) + (monitoring if present else [])
    return [adopt(obj, body) for obj in objects], impossible


def _autoscaling_condition(spec: QueueSpec, state: QueueState) -> Condition:
    if not spec.autoscaling.enabled:
        return Condition("Autoscaling", False, "Disabled", "autoscaling is disabled in the spec")
    if state.autoscaling is not None:
        return state.autoscaling
    return Condition("Autoscaling", None, "Starting", "the autoscaler has not started yet")


async def _write_status(body: Mapping[str, Any], new_status: Mapping[str, Any]) -> None:
    patch = status_patch(body.get("status") or {}, new_status)
    if patch is None:
        return
    meta = body["metadata"]
    await KUBE.patch(BGQ, meta["namespace"], meta["name"], {"status": patch}, subresource="status")
    opmetrics.count_write("patch", "BookGenQueue/status")


async def _report_problem(body: Mapping[str, Any], reason: str, message: str) -> None:
    old = body.get("status") or {}
    generation = body["metadata"].get("generation")
    status = desired_status(old, generation=generation, conditions=[Condition("Ready", False, reason, message)],
                            pools=None, now=now_iso())
    await _write_status(body, status)


async def reconcile_once(body: Mapping[str, Any], trigger: str) -> None:
    meta = body["metadata"]
    state = STATES.setdefault(meta["uid"], QueueState())
    with opmetrics.reconcile_timer(meta["uid"], trigger) as outcome:
        try:
            spec = OperatorDefaults.from_env(os.environ).apply(parse_queue(body))
        except SpecError as exc:
            outcome["result"] = "invalid"
            opmetrics.count_error("InvalidSpec")
            if state.invalid_generation != meta.get("generation"):
                events.warning(body, "InvalidSpec", str(exc))
            state.invalid_generation = meta.get("generation")
            await _report_problem(body, "InvalidSpec", str(exc))
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        state.invalid_generation = None
        checked = state.secrets_checked
        try:
            if (trigger not in SPEC_TRIGGERS and checked is not None and checked[0] == meta.get("generation")
                    and time.monotonic() - checked[1] < RESYNC_SECONDS):
                created = []
            else:
                created = await _ensure_secrets(spec, body)
                state.secrets_checked = (meta.get("generation"), time.monotonic())
        except MissingSecret as exc:
            state.secrets_checked = None
            outcome["result"] = "waiting"
            opmetrics.count_error("SecretNotFound")
            delay = state.retry_delay
            state.retry_at, state.retry_delay = time.monotonic() + delay, min(delay * 2, 600.0)
            if delay == SECRET_RETRY_SECONDS:
                events.warning(body, "SecretNotFound", str(exc))
            await _report_problem(body, "SecretNotFound", f"{exc} (retrying in {delay:.0f}s)")
            raise kopf.TemporaryError(str(exc), delay=delay) from None
        state.retry_at, state.retry_delay = 0.0, SECRET_RETRY_SECONDS
        if created:
            events.normal(body, "SecretsGenerated", f"generated Secrets {', '.join(created)}")
        groups = await _api_groups()
        desired, impossible = _desired(spec, body, groups)
        if impossible and state.warned_generation != meta.get("generation"):
            state.warned_generation = meta.get("generation")
            events.warning(body, "PrometheusOperatorMissing", f"not creating {', '.join(impossible)}: the "
                           f"{MONITORING_GROUP} CRDs are not installed (install the Prometheus Operator)")
        # Drift repair (timer) and child events read the children from the watch cache; a change of
        # the spec (create, update, resume, a repeat after one) acts on LISTs, as before the cache.
        actual = await apply_children(KUBE, body, spec, desired, groups, state.learned, CHILDREN,
                                      relist=trigger in SPEC_TRIGGERS)
        by_name = {k[2]: v for k, v in actual.items() if k[1] in ("Deployment", "StatefulSet")}
        pools = [deployment_state(p.name, by_name.get(f"{spec.name}-worker-{p.name}")) for p in spec.pools]
        conditions = component_conditions(
            redis_external=spec.redis.mode == "external", redis=by_name.get(f"{spec.name}-redis"), pools=pools,
            flower_enabled=spec.flower.enabled, flower=by_name.get(f"{spec.name}-flower"),
            autoscaling=_autoscaling_condition(spec, state))
        new_status = desired_status(body.get("status") or {}, generation=meta.get("generation"),
                                    conditions=conditions, pools=pools, now=now_iso())
        await _write_status(body, new_status)
        outcome["result"] = "ok"


async def reconcile(body: Mapping[str, Any], trigger: str) -> None:
    """Serialise runs per queue; a trigger during a run makes the run repeat with a fresh body."""
    body = plain(body)
    if body["metadata"].get("deletionTimestamp"):
        return  # going away: the garbage collector removes the children; keep no state for it
    state = STATES.setdefault(body["metadata"]["uid"], QueueState())
    if state.lock.locked():
        # Run again afterwards, as the strongest trigger seen meanwhile asks (a spec change lists).
        state.dirty = True
        if state.dirty_trigger not in SPEC_TRIGGERS:
            state.dirty_trigger = trigger
        return
    async with state.lock:
        while True:
            state.dirty, state.dirty_trigger = False, None
            await reconcile_once(body, trigger)
            if not state.dirty:
                return
            meta = body["metadata"]
            fresh = await KUBE.get(BGQ, meta["namespace"], meta["name"])
            if fresh is None:
                return
            body, trigger = fresh, state.dirty_trigger or "timer"


def _in_backoff(body: Mapping[str, Any]) -> bool:
    state = STATES.get(body["metadata"]["uid"])
    if state is None:
        return False
    return state.invalid_generation == body["metadata"].get("generation") or time.monotonic() < state.retry_at


# ---------------------------------------------------------------- kopf registrations


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 600
    settings.persistence.finalizer = "bookgen.io/finalizer"  # only used if a deletion handler ever appears
    port = os.environ.get("BOOKGEN_OPERATOR_METRICS_PORT")
    if port:
        opmetrics.start_server(int(port))
    from bookgen_operator.controller import gcpauses

    gcpauses.measure()
    gcpauses.settle()
    # kopf warns about handlers of kinds the cluster does not serve; ours are optional (no prometheus-operator).
    logging.getLogger("kopf._core.reactor.observation").addFilter(_optional_kinds_unresolved)
    for group, version, plural in CHILD_RESOURCES + CACHED_RESOURCES:
        settings.watching.label_selectors[(group, version, plural) if group else (version, plural)] = CHILD_SELECTOR


def _optional_kinds_unresolved(record: logging.LogRecord) -> bool:
    """False for kopf's "Unresolved resources" warning when it names only the optional monitoring kinds."""
    message = record.getMessage()
    if not message.startswith("Unresolved resources cannot be served"):
        return True
    named = message.partition(":")[2].split(",")
    return not all(MONITORING_GROUP in name for name in named)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else kubeconfig; BOOKGEN_KUBE_SERVER (e.g. `kubectl proxy`) for dev/tests."""
    server = os.environ.get("BOOKGEN_KUBE_SERVER")
    if server:
        info = kopf.ConnectionInfo(server=server)
    else:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    CONNECTION.info = info
    return info


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    await KUBE.close()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def queue_changed(body: kopf.Body, reason: str, **_: Any) -> None:
    await reconcile(body, str(reason))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RECONCILE_INTERVAL, initial_delay=RECONCILE_INTERVAL)
async def queue_timer(body: kopf.Body, **_: Any) -> None:
    """Drift repair and status refresh; silent while a problem waits for the user or its backoff."""
    if _in_backoff(body):
        return
    try:
        await reconcile(body, "timer")
    except (kopf.PermanentError, kopf.TemporaryError) as exc:  # already reported in status
        log.info("timer reconcile of %s: %s", body["metadata"]["name"], exc)


def _track_worker_replicas(body: Mapping[str, Any], type: str | None) -> None:
    """Feed the autoscaler's replica cache from this watch, so its polls read no Deployment."""
    meta = body.get("metadata", {})
    if body.get("kind") != "Deployment" or (meta.get("labels") or {}).get("app.kubernetes.io/component") != "worker":
        return
    from bookgen_operator.controller.autoscaling import REPLICAS

    if type == "DELETED":
        REPLICAS.gone(meta["namespace"], meta["name"])
    else:
        REPLICAS.seen(meta["namespace"], meta["name"], (body.get("spec") or {}).get("replicas"))


def _track_child(body: Mapping[str, Any], type: str | None) -> None:
    """Keep the reconciles' view of the children (child_cache) from kopf's watches."""
    meta = body.get("metadata", {})
    if type == "DELETED":
        CHILDREN.gone(meta.get("namespace", ""), body.get("apiVersion", ""), body.get("kind", ""), meta.get("name", ""),
                      meta.get("resourceVersion"))
    else:
        CHILDREN.seen(plain(body))


async def _child_seen(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A managed Service, PodDisruptionBudget or NetworkPolicy changed: only the cache needs to know (the
    timer reconcile repairs them, as before)."""
    _track_child(body, type)


async def _child_changed(body: kopf.Body, type: str | None, **_: Any) -> None:
    """A managed Deployment/StatefulSet changed or vanished: reconcile its queue at once."""
    _track_worker_replicas(body, type)
    _track_child(body, type)
    if type is None:  # the initial listing: the queue's own resume handler covers it
        return
    owners = [ref for ref in body.get("metadata", {}).get("ownerReferences") or []
              if ref.get("kind") == "BookGenQueue" and ref.get("apiVersion", "").startswith(GROUP + "/")]
    for ref in owners:
        queue = await KUBE.get(BGQ, body["metadata"]["namespace"], ref["name"])
        if queue is None or queue["metadata"]["uid"] != ref.get("uid") or _in_backoff(queue):
            continue
        if queue["metadata"].get("deletionTimestamp"):
            continue
        try:
            await reconcile(queue, "child")
        except (kopf.PermanentError, kopf.TemporaryError, KubeError, httpx.HTTPError) as exc:
            # already in status, or the API is unreachable: the timer reconciles again later
            log.info("child-triggered reconcile of %s: %s", ref["name"], exc)


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
for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=MANAGED_BY)(_child_changed)
for _group, _version, _plural in CACHED_RESOURCES:
    kopf.on.event(*((_group,) if _group else ()), _version, _plural, labels=MANAGED_BY)(_child_seen)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def queue_deleted(body: kopf.Body, **_: Any) -> None:
    """Forget the queue's in-memory state (its children go with the garbage collector)."""
    forget(body["metadata"]["uid"])
    CHILDREN.forget(body["metadata"]["namespace"], body["metadata"]["name"])


def forget(uid: str) -> None:
    """Drop every per-queue item the operator keeps in memory, so deleted queues cost nothing."""
    STATES.pop(uid, None)
    opmetrics.forget(uid)
