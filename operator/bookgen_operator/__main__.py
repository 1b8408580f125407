"""`python -m bookgen_operator`: run the BookGenQueue operator (kopf) with our handlers.

Cluster-wide by default; `--namespace` (repeatable) restricts it. Liveness is kopf's endpoint
(`--liveness`), the operator's own metrics are served on `--metrics-port`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence


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
    parser.add_argument("--peering", action="store_true",
                        help="use kopf peering (needs the kopf peering CRDs) instead of running standalone")
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

    import bookgen_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # request lines would repeat every reconcile
    try:
        asyncio.run(kopf.operator(
            standalone=not args.peering,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
        ))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
