"""Why a queue's pods do not run, read for its status: the workloads' own conditions (free: the
reconcile already holds them) and, only while some component has fewer ready pods than it asked for,
one LIST of the queue's pods by our labels. A queue whose pods all run costs no request here."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bookgen_operator.controller.children import children_selector
from bookgen_operator.controller.client import RESOURCES, Kube, KubeError
from bookgen_operator.core.objects import Body
from bookgen_operator.core.pod_problems import pod_problems, workload_problem
from bookgen_operator.core.resources.labels import flower_name, redis_name, worker_name
from bookgen_operator.core.spec import QueueSpec
from bookgen_operator.core.status import PoolState, ready_count

log = logging.getLogger(__name__)
PODS = RESOURCES[("v1", "Pod")]


async def read_problems(kube: Kube, spec: QueueSpec, workloads: Mapping[str, Body | None],
                        pools: Sequence[PoolState]) -> dict[str, str]:
    """Owner (`worker/<pool>`, `redis`, `flower`) -> why its pods do not run."""
    redis = workloads.get(redis_name(spec))
    flower = workloads.get(flower_name(spec))
    lagging = (any(p.ready < p.requested for p in pools)
               or (spec.redis.managed and redis is not None and ready_count(redis) < 1)
               or (spec.flower.enabled and flower is not None and ready_count(flower) < 1))
    if not lagging:
        return {}
    try:
        problems = pod_problems(await kube.list(PODS, spec.namespace, children_selector(spec.name)))
    except (KubeError, OSError) as exc:  # the status stays right, only without the reason
        log.info("could not read the pods of %s/%s: %s", spec.namespace, spec.name, exc)
        problems = {}
    # A workload whose pods cannot even be created says so itself; that reason comes first.
    for key, name in [*((f"worker/{p.name}", worker_name(spec, p)) for p in spec.pools), ("flower", flower_name(spec))]:
        problem = workload_problem(workloads.get(name))
        if problem:
            problems[key] = problem
    return problems
