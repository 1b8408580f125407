"""One reconcile of a BookGenQueue: glue from a kopf body to the core, and the writes it plans.

One reconcile = parse the spec -> ensure generated Secrets -> desired children -> compare with
the API server -> create/patch only what differs -> status. Runs of one queue never overlap: a
trigger during a run marks the queue dirty and the run repeats once with a fresh body.

Failure policy (never a hot loop, never a crash):
- invalid spec -> Ready=False/InvalidSpec with the parser's message; no retry until the spec changes;
- a referenced Secret is missing -> Ready=False/SecretNotFound; retried with backoff (>= 30 s);
- the API server refuses a child as invalid (400/422: e.g. an affinity it cannot accept) ->
  Ready=False/ChildRejected with the server's own message; retried with the Secrets' backoff;
- other API errors -> kopf retries the handler with its own backoff; the timer tries again later
  (429/503 with Retry-After are waited out inside client.py first, never reported in status).
"""

from __future__ import annotations

import time
from typing import NoReturn

import kopf

from bookgen_operator.controller import events, opmetrics
from bookgen_operator.controller.child_cache import RESYNC_SECONDS
from bookgen_operator.controller.children import MONITORING_GROUP, apply_children
from bookgen_operator.controller.client import RESOURCES, KubeError, decoded, ensure_secret
from bookgen_operator.controller.context import OperatorContext, QueueState, plain
from bookgen_operator.controller.pod_reasons import read_problems
from bookgen_operator.core.objects import JSON, Body
from bookgen_operator.core.reconcile import adopt
from bookgen_operator.core.resources import desired_objects, generated_secrets, monitoring_objects
from bookgen_operator.core.spec import GROUP, VERSION, QueueSpec, SpecError, parse_queue
from bookgen_operator.core.status import (
    Condition,
    component_conditions,
    deployment_state,
    desired_status,
    now_iso,
    status_patch,
)

#: kopf's reasons for a reconcile that comes from the spec (and its first sight of a queue): those act on
#: LISTs and re-read Secrets; the timer and child events use what the watches and earlier checks saw.
SPEC_TRIGGERS = ("create", "update", "resume")
BGQ = RESOURCES[(f"{GROUP}/{VERSION}", "BookGenQueue")]


class MissingSecret(Exception):
    """A Secret the spec references does not exist (or lacks a key)."""


async def _ensure_secrets(ctx: OperatorContext, spec: QueueSpec, body: Body) -> list[str]:
    """Create generated Secrets once (stable passwords); check that referenced ones exist with their
    keys. Returns the names of the Secrets created now."""
    created: list[str] = []
    for secret in generated_secrets(spec):
        _, was_created = await ensure_secret(ctx.kube, adopt(secret, body))
        if was_created:
            created.append(secret["metadata"]["name"])
    checks: list[tuple[str, tuple[str, ...], str]] = []  # (secret, keys, what for)
    if not spec.redis_secret_generated:
        checks.append((spec.redis_secret_name, (spec.redis.password_secret_key,),
                       "the Redis password (spec.redis.passwordSecretRef)"))
    if spec.flower.enabled and not spec.flower_secret_generated:
        checks.append((spec.flower_secret_name, ("username", "password"),
                       "Flower's basic auth (spec.flower.authSecretRef)"))
    bucket = spec.exports.s3
    if bucket is not None and bucket.secret_name:
        checks.append((bucket.secret_name, (bucket.access_key_id_key, bucket.secret_access_key_key),
                       "the export bucket's credentials (spec.exports.s3.credentialsSecretRef)"))
    for name, keys, what in checks:
        found = await ctx.kube.get(RESOURCES[("v1", "Secret")], spec.namespace, name)
        if found is None:
            raise MissingSecret(f"Secret {spec.namespace}/{name} for {what} does not exist; create it")
        missing = [k for k in keys if decoded(found, k) is None]
        if missing:
            raise MissingSecret(f"Secret {spec.namespace}/{name} for {what} has no key {', '.join(missing)}")
    return created


async def _api_groups(ctx: OperatorContext) -> frozenset[str]:
    discovery = ctx.discovery
    if time.monotonic() - discovery.fetched_at > ctx.config.discovery_ttl or not discovery.fetched_at:
        discovery.groups = frozenset(await ctx.kube.api_groups())
        discovery.fetched_at = time.monotonic()
    return discovery.groups


def _desired(ctx: OperatorContext, spec: QueueSpec, body: Body,
             groups: frozenset[str]) -> tuple[list[JSON], list[str]]:
    """Every child, adopted; and the monitoring objects asked for ("always") that cannot exist here."""
    present = MONITORING_GROUP in groups
    monitoring = monitoring_objects(spec, present)
    impossible = [] if present else [f"{o['kind']} {o['metadata']['name']}" for o in monitoring]
    objects = desired_objects(spec, ctx.config.operator_namespace) + (monitoring if present else [])
    return [adopt(obj, body) for obj in objects], impossible


def _autoscaling_condition(spec: QueueSpec, state: QueueState) -> Condition:
    if not spec.autoscaling.enabled:
        return Condition("Autoscaling", False, "Disabled", "autoscaling is disabled in the spec")
    if state.autoscaling is not None:
        return state.autoscaling
    return Condition("Autoscaling", None, "Starting", "the autoscaler has not started yet")


async def _write_status(ctx: OperatorContext, body: Body, new_status: Body) -> None:
    patch = status_patch(body.get("status") or {}, new_status)
    if patch is None:
        return
    meta = body["metadata"]
    await ctx.kube.patch(BGQ, meta["namespace"], meta["name"], {"status": patch}, subresource="status")
    opmetrics.count_write("patch", "BookGenQueue/status")


async def _report_problem(ctx: OperatorContext, body: Body, reason: str, message: str) -> None:
    old = body.get("status") or {}
    generation = body["metadata"].get("generation")
    status = desired_status(old, generation=generation, conditions=[Condition("Ready", False, reason, message)],
                            pools=None, now=now_iso())
    await _write_status(ctx, body, status)


#: What the API server answers a write it refuses as invalid (its message says which field and why).
REJECTED = (400, 422)


async def _child_rejected(ctx: OperatorContext, body: Body, state: QueueState, exc: KubeError) -> NoReturn:
    """Report in status what the API server refused, then retry with backoff: a fix of the spec
    reconciles at once, and the timer stays quiet meanwhile (in_backoff)."""
    opmetrics.count_error("ChildRejected")
    message = f"the API server refused a child: {exc.message}"
    generation = body["metadata"].get("generation")
    if state.rejected_generation != generation:
        events.warning(body, "ChildRejected", message)
    state.rejected_generation = generation
    delay = state.retry_delay
    state.retry_at, state.retry_delay = time.monotonic() + delay, min(delay * 2, 600.0)
    await _report_problem(ctx, body, "ChildRejected", f"{message} (retrying in {delay:.0f}s)")
    raise kopf.TemporaryError(message, delay=delay) from None


async def reconcile_once(ctx: OperatorContext, body: Body, trigger: str) -> None:
    meta = body["metadata"]
    state = ctx.state(meta["uid"])
    ctx.reconciles[meta["uid"]] += 1
    with opmetrics.reconcile_timer(trigger) as outcome:
        try:
            spec = ctx.config.queue_defaults().apply(parse_queue(body))
        except SpecError as exc:
            outcome["result"] = "invalid"
            opmetrics.count_error("InvalidSpec")
            if state.invalid_generation != meta.get("generation"):
                events.warning(body, "InvalidSpec", str(exc))
            state.invalid_generation = meta.get("generation")
            await _report_problem(ctx, body, "InvalidSpec", str(exc))
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        state.invalid_generation = None
        checked = state.secrets_checked
        try:
            if (trigger not in SPEC_TRIGGERS and checked is not None and checked[0] == meta.get("generation")
                    and time.monotonic() - checked[1] < RESYNC_SECONDS):
                created = []
            else:
                created = await _ensure_secrets(ctx, spec, body)
                state.secrets_checked = (meta.get("generation"), time.monotonic())
        except MissingSecret as exc:
            state.secrets_checked = None
            outcome["result"] = "waiting"
            opmetrics.count_error("SecretNotFound")
            delay = state.retry_delay
            state.retry_at, state.retry_delay = time.monotonic() + delay, min(delay * 2, 600.0)
            if delay == ctx.config.secret_retry_seconds:
                events.warning(body, "SecretNotFound", str(exc))
            await _report_problem(ctx, body, "SecretNotFound", f"{exc} (retrying in {delay:.0f}s)")
            raise kopf.TemporaryError(str(exc), delay=delay) from None
        state.retry_at, state.retry_delay = 0.0, ctx.config.secret_retry_seconds
        if created:
            events.normal(body, "SecretsGenerated", f"generated Secrets {', '.join(created)}")
        groups = await _api_groups(ctx)
        desired, impossible = _desired(ctx, spec, body, groups)
        if impossible and state.warned_generation != meta.get("generation"):
            state.warned_generation = meta.get("generation")
            events.warning(body, "PrometheusOperatorMissing", f"not creating {', '.join(impossible)}: the "
                           f"{MONITORING_GROUP} CRDs are not installed (install the Prometheus Operator)")
        # Drift repair (timer) and child events read the children from the watch cache; a change of
        # the spec (create, update, resume, a repeat after one) acts on LISTs, as before the cache.
        try:
            actual = await apply_children(ctx.kube, body, spec, desired, groups, state.learned, ctx.children,
                                          relist=trigger in SPEC_TRIGGERS)
        except KubeError as exc:
            if exc.code not in REJECTED:
                raise
            outcome["result"] = "waiting"
            await _child_rejected(ctx, body, state, exc)
        by_name = {k[2]: v for k, v in actual.items() if k[1] in ("Deployment", "StatefulSet")}
        pools = [deployment_state(p.name, by_name.get(f"{spec.name}-worker-{p.name}")) for p in spec.pools]
        conditions = component_conditions(
            redis_external=spec.redis.mode == "external", redis=by_name.get(f"{spec.name}-redis"), pools=pools,
            flower_enabled=spec.flower.enabled, flower=by_name.get(f"{spec.name}-flower"),
            autoscaling=_autoscaling_condition(spec, state),
            problems=await read_problems(ctx.kube, spec, by_name, pools))
        new_status = desired_status(body.get("status") or {}, generation=meta.get("generation"),
                                    conditions=conditions, pools=pools, now=now_iso())
        await _write_status(ctx, body, new_status)
        outcome["result"] = "ok"


async def reconcile(ctx: OperatorContext, body: Body, trigger: str) -> None:
    """Serialise runs per queue; a trigger during a run makes the run repeat with a fresh body."""
    body = plain(body)
    if body["metadata"].get("deletionTimestamp"):
        return  # going away: the garbage collector removes the children; keep no state for it
    state = ctx.state(body["metadata"]["uid"])
    if state.lock.locked():
        # Run again afterwards, as the strongest trigger seen meanwhile asks (a spec change lists).
        state.dirty = True
        if state.dirty_trigger not in SPEC_TRIGGERS:
            state.dirty_trigger = trigger
        return
    async with state.lock:
        while True:
            state.clean()
            await reconcile_once(ctx, body, trigger)
            if not state.dirty:
                return
            meta = body["metadata"]
            fresh = await ctx.kube.get(BGQ, meta["namespace"], meta["name"])
            if fresh is None:
                return
            body, trigger = fresh, state.dirty_trigger or "timer"


def in_backoff(ctx: OperatorContext, body: Body) -> bool:
    """True while a problem waits for the user (an invalid generation) or for its retry time."""
    state = ctx.states.get(body["metadata"]["uid"])
    if state is None:
        return False
    return state.invalid_generation == body["metadata"].get("generation") or time.monotonic() < state.retry_at
