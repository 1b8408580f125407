"""`python -m bookgen_operator`: run the BookGenQueue operator (kopf) with our handlers.

Cluster-wide by default; `--namespace` (repeatable) restricts it. `--leader-elect` makes several
replicas safe: only the holder of a Lease acts (leader.py). Liveness is kopf's endpoint
(`--liveness`), the operator's own metrics are served on `--metrics-port`. Every setting is read once
here (config.py) into the one OperatorContext that kopf hands to each handler as `memo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from bookgen_operator.controller.config import OperatorConfig, load_config

if TYPE_CHECKING:
    from aiohttp import web

    from bookgen_operator.controller.context import OperatorContext

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def missing_credentials(config: OperatorConfig) -> str | None:
    """A one-line explanation when no way to reach a cluster is configured, else None."""
    if config.kube_server or os.path.exists(SERVICE_ACCOUNT_TOKEN):
        return None
    paths = config.kubeconfig or os.path.expanduser("~/.kube/config")
    if any(os.path.exists(path) for path in paths.split(os.pathsep) if path):
        return None
    return (f"no Kubernetes credentials: no service account token, no kubeconfig at {paths}; run in a pod, "
            "set KUBECONFIG, or set BOOKGEN_KUBE_SERVER to an API URL such as `kubectl proxy`'s")


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(argv)
    problem = missing_credentials(config)
    if problem:
        print(f"bookgen-operator: {problem}", file=sys.stderr)
        return 2
    # Imported once the arguments are good: `--help` and a missing login answer without loading kopf.
    import kopf

    from bookgen_operator.controller import handlers, loops
    from bookgen_operator.controller.context import OperatorContext

    # Two threads share the GIL: kopf's loop and the autoscaler's (controller/scheduler.py). A thread back
    # from a socket call waits for the GIL up to the switch interval; at the default 5 ms, the scheduler's
    # polls of 250 queues queued behind kopf's reconciles (py-spy: 17 % of samples waiting in write()).
    sys.setswitchinterval(0.001)
    kopf.configure(verbose=config.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # request lines would repeat every reconcile
    ctx = OperatorContext.build(config)
    operator = kopf.operator(
        registry=handlers.registry(config),
        memo=ctx,
        standalone=True,  # no kopf peering: leader election (leader.py) decides who acts
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=config.liveness or None,
    )
    try:
        loops.run(_elected(operator, ctx) if config.leader_elect else operator)
    except KeyboardInterrupt:
        return 130
    return 0


async def _elected(operator: Coroutine[Any, Any, None], ctx: OperatorContext) -> None:
    """Wait for the Lease (answering the liveness probe meanwhile), then run kopf while renewing it;
    release it after kopf has stopped. Losing it ends the process at once: no write after that."""
    import kopf

    from bookgen_operator.controller import handlers
    from bookgen_operator.controller.client import Kube
    from bookgen_operator.controller.leader import LeaderElector

    config = ctx.config
    handlers.login(memo=ctx, settings=kopf.OperatorSettings(), logger=logging.getLogger("bookgen_operator.login"))
    # The elector's own client has no leadership guard: it must write the Lease before it leads.
    kube = Kube(lambda: ctx.connection.info, user_agent=config.user_agent, throttle_budget=config.throttle_budget)
    elector = LeaderElector(kube, config.lease_namespace, config.lease_name, config.identity, ctx.leadership,
                            config.lease_timings)
    standby = await _standby_health(config.liveness)
    try:
        leading = await _until_stopped(elector.acquire())
    except asyncio.CancelledError:
        operator.close()
        raise
    finally:
        if standby is not None:
            await standby.cleanup()
    if not leading:
        operator.close()
        logging.getLogger(__name__).info("stopped on standby: the Lease was never held")
        return

    def lost() -> None:
        logging.getLogger(__name__).error("leader election lost: exiting so that only the new leader acts")
        logging.shutdown()
        os._exit(3)

    keeper = asyncio.create_task(elector.hold(lost))
    try:
        await operator
    finally:
        keeper.cancel()
        await elector.release()


async def _until_stopped(waiting: Coroutine[Any, Any, None]) -> bool:
    """Await `waiting`, unless SIGTERM or SIGINT comes first: then cancel it and return False.

    kopf installs its signal handlers only once it runs, i.e. once this replica leads. Before that a
    standby had none, and as PID 1 of its container the kernel ignores a signal without a handler: the
    kubelet's SIGTERM did nothing, and every rollout or scale-down waited the whole grace period for the
    SIGKILL (seen on the real node: exit code 137)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    task, stopped = asyncio.ensure_future(waiting), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        stopped.cancel()
    if task.done():
        task.result()  # its exception, if it failed
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _standby_health(url: str) -> web.AppRunner | None:
    """A standby answers the liveness endpoint too (it is healthy, only not leading), so the kubelet
    does not restart it and a rollout does not wait for it; kopf serves the same URL once leading."""
    if not url:
        return None
    from urllib.parse import urlparse

    from aiohttp import web

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    parsed = urlparse(url)
    app = web.Application()
    app.router.add_get(parsed.path or "/healthz", healthy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, parsed.hostname or "0.0.0.0", parsed.port or 80).start()
    return runner


if __name__ == "__main__":
    sys.exit(main())
