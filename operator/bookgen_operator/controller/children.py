"""Writing a queue's children: find what exists (by our labels: from the watch cache, else a LIST),
create/patch what differs, delete owned children no longer desired, and remember how the server
stored what we wrote.

`reconcile.plan`/`reconcile.prune` decide (pure); this module performs their writes through the
operator's one client and posts the Events. `learned` (per queue, kept by the caller) maps each child
to the stored form of its enforced fields (`reconcile.learn`), so the next reconcile compares the way
the server stores objects and a settled queue sees no drift.
"""

from __future__ import annotations

import logging

from bookgen_operator.controller import events, opmetrics
from bookgen_operator.controller.child_cache import ChildCache
from bookgen_operator.controller.client import Kube, KubeError, resource_for
from bookgen_operator.core.objects import JSON, Body
from bookgen_operator.core.reconcile import Action, Learned, ObjectKey, key_of, plan
from bookgen_operator.core.removals import without_nulls
from bookgen_operator.core.spec import QueueSpec

log = logging.getLogger(__name__)

MONITORING_GROUP = "monitoring.coreos.com"
#: Kinds of children that may be pruned, by (apiVersion, kind); monitoring kinds only where served.
PRUNABLE = (("v1", "Service"), ("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"),
            ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "NetworkPolicy"))
MONITORING_KINDS = ((f"{MONITORING_GROUP}/v1", "ServiceMonitor"), (f"{MONITORING_GROUP}/v1", "PrometheusRule"))


def children_selector(name: str) -> str:
    """Our children of one queue, selected by the server (the owner's uid is checked on top)."""
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=bookgen-operator"


async def _existing(kube: Kube, spec: QueueSpec, groups: frozenset[str], cache: ChildCache | None,
                    relist: bool) -> dict[ObjectKey, JSON]:
    """Every child of this queue that exists, by key: from the watch cache for the kinds it covers (LISTs
    when asked to, or when the queue is due a resync), one LIST per other kind, selected by our labels."""
    kinds = PRUNABLE + (MONITORING_KINDS if MONITORING_GROUP in groups else ())
    relist = relist or cache is None or cache.due(spec.namespace, spec.name)
    by_kind: dict[tuple[str, str], list[JSON]] = {}
    versions: dict[tuple[str, str], str | None] = {}
    for api_version, kind in kinds:
        if relist or cache is None or not cache.covers(api_version, kind):
            by_kind[(api_version, kind)], versions[(api_version, kind)] = await kube.list_versioned(
                resource_for(api_version, kind), spec.namespace, children_selector(spec.name))
        else:
            by_kind[(api_version, kind)] = cache.children(spec.namespace, api_version, kind, spec.name)
    if relist and cache is not None:
        cache.listed(spec.namespace, spec.name, by_kind, versions)
    return {(api_version, kind, obj["metadata"]["name"]): obj
            for (api_version, kind), items in by_kind.items() for obj in items}


async def _write(kube: Kube, spec: QueueSpec, action: Action, learned: dict[ObjectKey, Learned],
                 owns_replicas: bool, cache: ChildCache | None) -> JSON | None:
    """One planned write; returns the object as stored (None after a delete). Learns the stored form,
    and writes it through to the cache."""
    stored = await _write_one(kube, spec, action, learned, owns_replicas)
    if cache is not None:
        if action.verb == "delete":
            cache.gone(spec.namespace, action.api_version, action.kind, action.name)
        elif stored:
            cache.seen({"apiVersion": action.api_version, "kind": action.kind, **stored})
    return stored


async def _write_one(kube: Kube, spec: QueueSpec, action: Action, learned: dict[ObjectKey, Learned],
                     owns_replicas: bool) -> JSON | None:
    from bookgen_operator.core.reconcile import comparable, learn

    res = resource_for(action.api_version, action.kind)
    key = (action.api_version, action.kind, action.name)
    if action.verb == "delete":
        await kube.delete(res, spec.namespace, action.name, uid=action.body.get("uid"))
        learned.pop(key, None)
        return None
    if action.verb == "create":
        try:
            stored = await kube.create(res, spec.namespace, action.body)
        except KubeError as exc:
            if exc.code != 409:
                raise
            # Created meanwhile (or it lost our labels, so the list missed it): re-read; the next
            # reconcile compares it like any other child.
            return await kube.get(res, spec.namespace, action.name)
        enforced = comparable(action.body, existing=True, autoscaler_owns_replicas=owns_replicas)
    else:
        stored = await kube.patch(res, spec.namespace, action.name, action.body)
        enforced = without_nulls(action.body)  # a removal's nulls are not fields we enforce
    learned[key] = learn(enforced, stored)
    return stored


async def apply_children(kube: Kube, body: Body, spec: QueueSpec, desired: list[JSON],
                         groups: frozenset[str], learned: dict[ObjectKey, Learned],
                         cache: ChildCache | None = None, relist: bool = True) -> dict[ObjectKey, JSON | None]:
    """Create/patch what differs, delete owned children no longer desired; returns the freshest view
    of every desired child. `cache`: the watches' view of the children (child_cache), used unless
    `relist` (a spec change: act on the server's own answer) or the queue is due a resync."""
    from bookgen_operator.core.reconcile import prune
    from bookgen_operator.core.resources import autoscaler_owns_replicas

    existing = await _existing(kube, spec, groups, cache, relist)
    actual: dict[ObjectKey, JSON | None] = {}
    for obj in desired:
        key = key_of(obj)
        actual[key] = existing.get(key)
        if actual[key] is None:  # not found by our labels: it may exist with its labels edited away
            actual[key] = await kube.get(resource_for(obj["apiVersion"], obj["kind"]), spec.namespace,
                                         obj["metadata"]["name"])
    owns = autoscaler_owns_replicas(spec)
    actions = plan(desired, actual, autoscaler_owns_replicas=owns, learned=learned)
    actions += prune(desired, existing, body["metadata"]["uid"])
    for action in actions:
        stored = await _write(kube, spec, action, learned, owns, cache)
        if action.verb != "delete":
            actual[(action.api_version, action.kind, action.name)] = stored
        opmetrics.count_write(action.verb, action.kind)
    created = [a for a in actions if a.verb == "create"]
    patched = [a for a in actions if a.verb == "patch"]
    deleted = [a for a in actions if a.verb == "delete"]
    if created:
        fresh = len(created) == len(desired)  # nothing existed: a new queue, not a repair
        events.normal(body, "Created" if fresh else "Restored", "; ".join(a.describe() for a in created))
    if patched:
        events.normal(body, "Updated", "; ".join(a.describe() for a in patched))
    if deleted:
        events.normal(body, "Removed", "; ".join(a.describe() for a in deleted))
    if actions:
        log.info("%s/%s: %s", spec.namespace, spec.name, ", ".join(a.describe() for a in actions))
    return actual
