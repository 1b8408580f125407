"""`python -m bookgen_operator`: run the BookGenQueue operator (kopf) with our handlers.

Cluster-wide by default; `--namespace` (repeatable) restricts it. `--leader-elect` makes several
replicas safe: only the holder of a Lease acts (leader.py). Liveness is kopf's endpoint
(`--liveness`), the operator's own metrics are served on `--metrics-port`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bookgen_operator",
        description="Run the BookGen queue operator: reconcile BookGenQueue resources into Redis, worker pools, "
        "beat, Flower and metrics, and autoscale the pools.",
    )
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch only this namespace (repeatable; glob patterns allowed). Default: all namespaces")
    parser.add_argument("--liveness", default=os.environ.get("BOOKGEN_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz"),
                        help="kopf liveness endpoint URL (default: %(default)s; empty to disable)")
    parser.add_argument("--metrics-port", type=int,
                        default=int(os.environ.get("BOOKGEN_OPERATOR_METRICS_PORT", "9090")),
                        help="port of the operator's own Prometheus /metrics (default: %(default)s; 0 to disable)")
    parser.add_argument("--leader-elect", action="store_true",
                        default=os.environ.get("BOOKGEN_LEADER_ELECT", "").lower() in ("1", "true", "yes", "on"),
                        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease acts, "
                        "the others wait on standby (see --lease-namespace)")
    parser.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                        help="namespace of the leader election Lease (default: the pod's, else %(default)s)")
    parser.add_argument("--lease-name", default="bookgen-operator", help="name of the Lease (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def missing_credentials() -> str | None:
    """A one-line explanation when no way to reach a cluster is configured, else None."""
    if os.environ.get("BOOKGEN_KUBE_SERVER") or os.path.exists(SERVICE_ACCOUNT_TOKEN):
        return None
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if any(os.path.exists(path) for path in paths.split(os.pathsep) if path):
        return None
    return (f"no Kubernetes credentials: no service account token, no kubeconfig at {paths}; run in a pod, "
            "set KUBECONFIG, or set BOOKGEN_KUBE_SERVER to an API URL such as `kubectl proxy`'s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = missing_credentials()
    if problem:
        print(f"bookgen-operator: {problem}", file=sys.stderr)
        return 2
    if args.metrics_port:
        os.environ["BOOKGEN_OPERATOR_METRICS_PORT"] = str(args.metrics_port)
    else:
        os.environ.pop("BOOKGEN_OPERATOR_METRICS_PORT", None)
    import kopf

    import bookgen_operator.controller.handlers  # noqa: F401  (registers the handlers)
    from bookgen_operator.controller import loops

    # Two threads share the GIL: kopf's loop and the autoscaler's (autoscaler/scheduler.py). A thread back
    # from a socket call waits for the GIL up to the switch interval; at the default 5 ms, the scheduler's
    # polls of 250 queues queued behind kopf's reconciles (py-spy: 17 % of samples waiting in write()).
    sys.setswitchinterval(0.001)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # request lines would repeat every reconcile
    # Our own watches and writes follow the operator's namespaces (handlers reads this).
    os.environ["BOOKGEN_WATCH_NAMESPACES"] = ",".join(args.namespace)
    operator = kopf.operator(
        standalone=True,  # no kopf peering: leader election (leader.py) decides who acts
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )
    try:
        loops.run(_elected(operator, args) if args.leader_elect else operator)
    except KeyboardInterrupt:
        return 130
    return 0


async def _elected(operator: Any, args: argparse.Namespace) -> None:
    """Wait for the Lease (answering the liveness probe meanwhile), then run kopf while renewing it;
    release it after kopf has stopped. Losing it ends the process at once: no write after that."""
    import kopf

    from bookgen_operator.controller import handlers
    from bookgen_operator.controller.client import Kube
    from bookgen_operator.controller.leader import LeaderElector

    handlers.login(settings=kopf.OperatorSettings(), logger=logging.getLogger("bookgen_operator.login"))
    elector = LeaderElector(Kube(lambda: handlers.CONNECTION.info), args.lease_namespace, args.lease_name)
    standby = await _standby_health(args.liveness)
    try:
        await elector.acquire()
    except asyncio.CancelledError:
        operator.close()
        raise
    finally:
        if standby is not None:
            await standby.cleanup()

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


async def _standby_health(url: str) -> Any:
    """A standby answers the liveness endpoint too (it is healthy, only not leading), so the kubelet
    does not restart it and a rollout does not wait for it; kopf serves the same URL once leading."""
    if not url:
        return None
    from urllib.parse import urlparse

    from aiohttp import web

    parsed = urlparse(url)
    app = web.Application()
    app.router.add_get(parsed.path or "/healthz", lambda _: web.json_response({"standby": True}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, parsed.hostname or "0.0.0.0", parsed.port or 80).start()
    return runner


if __name__ == "__main__":
    sys.exit(main())
