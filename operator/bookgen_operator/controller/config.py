"""Every setting of the operator process, read once: the command line, then the environment.

`load_config(argv, environ)` is the only place the operator reads its environment (a unit test holds
everything else to that). The result is a frozen `OperatorConfig`: main builds one OperatorContext from
it, and the handlers reach both through kopf's memo. Each field names its variable, its flag and what it
does; `settings_table()` renders them for docs/operator.md (a test keeps that table in step), as
bookgen_worker.config.Settings is the one place for the worker's settings.

Parsing keeps the operator's historical rules: numbers are read with float()/int() (a bad number stops
the process at start, as it always did), BOOKGEN_AUTOSCALER is off only for off/0/false/no, and
BOOKGEN_LEADER_ELECT is on only for 1/true/yes/on. The chart's defaults for every queue
(BOOKGEN_IMAGE_REGISTRY, ..._PULL_SECRETS, BOOKGEN_MONITOR_LABELS, BOOKGEN_ALERTS) are checked here once; a
malformed value is kept as `defaults_problem` and reported on every queue as InvalidSpec, as when they were
read at each reconcile.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Mapping, Sequence

from bookgen_operator.controller.leader import LeaseTimings
from bookgen_operator.core.spec import SpecError
from bookgen_operator.core.spec.operator_defaults import OperatorDefaults

_OFF = ("off", "0", "false", "no")
_ON = ("1", "true", "yes", "on")


def _doc(meaning: str, *, env: str = "", flag: str = "", shown: str = "") -> dict[str, str]:
    """What the settings table says about a field (`shown`: the default as documented, else its repr)."""
    return {"env": env, "flag": flag, "meaning": meaning, "shown": shown}


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = dataclasses.field(default=(), metadata=_doc(
        "watch only these namespaces (glob patterns allowed); empty = cluster-wide",
        flag="-n, --namespace (repeatable)", shown="all namespaces"))
    liveness: str = dataclasses.field(default="http://0.0.0.0:8080/healthz", metadata=_doc(
        "kopf's liveness endpoint (a standby answers it too); empty = none",
        env="BOOKGEN_OPERATOR_LIVENESS", flag="--liveness"))
    metrics_port: int = dataclasses.field(default=9090, metadata=_doc(
        "port of the operator's own /metrics; 0 = none", env="BOOKGEN_OPERATOR_METRICS_PORT", flag="--metrics-port"))
    leader_elect: bool = dataclasses.field(default=False, metadata=_doc(
        "only the holder of a coordination.k8s.io Lease acts; the other replicas wait on standby",
        env="BOOKGEN_LEADER_ELECT", flag="--leader-elect"))
    lease_namespace: str = dataclasses.field(default="default", metadata=_doc(
        "namespace of the leader election Lease", env="POD_NAMESPACE", flag="--lease-namespace"))
    lease_name: str = dataclasses.field(default="bookgen-operator", metadata=_doc(
        "name of the Lease", flag="--lease-name"))
    verbose: bool = dataclasses.field(default=False, metadata=_doc("debug logging", flag="-v, --verbose"))
    operator_namespace: str | None = dataclasses.field(default=None, metadata=_doc(
        "where the operator's pod runs (the chart sets it): each managed Redis admits it",
        env="POD_NAMESPACE", shown="none"))
    pod_name: str = dataclasses.field(default="", metadata=_doc(
        "this replica's name in the Lease and in the User-Agent of its API calls",
        env="POD_NAME", shown="host name and pid"))
    kube_server: str = dataclasses.field(default="", metadata=_doc(
        "an API server URL without credentials (e.g. `kubectl proxy`'s), for development and tests; "
        "without it: the service account, else the kubeconfig", env="BOOKGEN_KUBE_SERVER", shown="none"))
    kubeconfig: str = dataclasses.field(default="", metadata=_doc(
        "kubeconfig files (kopf reads them to log in; their presence is checked at start)",
        env="KUBECONFIG", shown="~/.kube/config"))
    reconcile_interval: float = dataclasses.field(default=30.0, metadata=_doc(
        "seconds between timer reconciles of a queue (drift repair, status)", env="BOOKGEN_RECONCILE_INTERVAL"))
    discovery_ttl: float = dataclasses.field(default=60.0, metadata=_doc(
        "seconds the API groups (is the Prometheus Operator there?) are reused", env="BOOKGEN_DISCOVERY_TTL"))
    secret_retry_seconds: float = dataclasses.field(default=30.0, metadata=_doc(
        "first retry after a referenced Secret was missing, doubling up to 600 s (at least 30)",
        env="BOOKGEN_SECRET_RETRY_SECONDS"))
    autoscaler: bool = dataclasses.field(default=True, metadata=_doc(
        "run each queue's autoscaler (off/0/false/no: replicas stay as they are)", env="BOOKGEN_AUTOSCALER",
        shown="on"))
    throttle_budget: float = dataclasses.field(default=60.0, metadata=_doc(
        "longest wait for one API request answered 429, or 503 with Retry-After", env="BOOKGEN_KUBE_THROTTLE_BUDGET"))
    lease_duration: float = dataclasses.field(default=8.0, metadata=_doc(
        "a standby takes over after seeing the Lease unchanged this long", env="BOOKGEN_LEASE_DURATION"))
    renew_deadline: float = dataclasses.field(default=5.0, metadata=_doc(
        "the leader stops writing when it has not renewed for this long", env="BOOKGEN_LEASE_RENEW_DEADLINE"))
    lease_retry: float = dataclasses.field(default=2.0, metadata=_doc(
        "seconds between the leader's renewals", env="BOOKGEN_LEASE_RETRY"))
    standby_poll: float = dataclasses.field(default=1.0, metadata=_doc(
        "seconds between a standby's reads of the Lease", env="BOOKGEN_LEASE_STANDBY_POLL"))
    defaults: OperatorDefaults = dataclasses.field(default=OperatorDefaults(), metadata=_doc(
        "the chart's defaults for every queue: the registry of every child image, pull Secrets added to every "
        "child pod (comma-separated), monitor labels (`k=v,k2=v2`) where the spec sets none, the alert tuning "
        "(the chart's `alerts` as JSON) under each queue's spec.metrics.alerts",
        env="BOOKGEN_IMAGE_REGISTRY, BOOKGEN_IMAGE_PULL_SECRETS, BOOKGEN_MONITOR_LABELS, BOOKGEN_ALERTS", shown="none"))
    #: Why the chart's defaults are unusable (reported on every queue), None when they are fine.
    defaults_problem: str | None = dataclasses.field(default=None, metadata={"internal": "yes"})

    @property
    def lease_timings(self) -> LeaseTimings:
        return LeaseTimings(self.lease_duration, self.renew_deadline, self.lease_retry, self.standby_poll)

    @property
    def identity(self) -> str:
        """This replica's name: POD_NAME, else host name and pid (two processes on one host differ)."""
        return self.pod_name or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def user_agent(self) -> str:
        """Names this replica in the API server's audit log (which replica wrote what)."""
        return f"bookgen-operator/0.1 ({self.pod_name or os.uname().nodename}/{os.getpid()})"

    def queue_defaults(self) -> OperatorDefaults:
        """The chart's defaults for every queue; SpecError (naming the variable) when one is malformed."""
        if self.defaults_problem is not None:
            raise SpecError(self.defaults_problem)
        return self.defaults


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    """The command line; flags without a value fall back to the environment, then to the defaults."""
    d = OperatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bookgen_operator",
        description="Run the BookGen queue operator: reconcile BookGenQueue resources into Redis, worker pools, "
        "beat, Flower and metrics, and autoscale the pools.",
    )
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch only this namespace (repeatable; glob patterns allowed). Default: all namespaces")
    parser.add_argument("--liveness", default=environ.get("BOOKGEN_OPERATOR_LIVENESS", d.liveness),
                        help="kopf liveness endpoint URL (default: %(default)s; empty to disable)")
    parser.add_argument("--metrics-port", type=int,
                        default=int(environ.get("BOOKGEN_OPERATOR_METRICS_PORT", str(d.metrics_port))),
                        help="port of the operator's own Prometheus /metrics (default: %(default)s; 0 to disable)")
    parser.add_argument("--leader-elect", action="store_true",
                        default=environ.get("BOOKGEN_LEADER_ELECT", "").lower() in _ON,
                        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease acts, "
                        "the others wait on standby (see --lease-namespace)")
    parser.add_argument("--lease-namespace", default=environ.get("POD_NAMESPACE", d.lease_namespace),
                        help="namespace of the leader election Lease (default: the pod's, else %(default)s)")
    parser.add_argument("--lease-name", default=d.lease_name, help="name of the Lease (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> OperatorConfig:
    """Read the command line and the environment once (`environ` defaults to the process's)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    args = parse_args(argv, env)
    defaults, problem = OperatorDefaults(), None
    try:
        defaults = OperatorDefaults.from_env(env)
    except SpecError as exc:
        problem = str(exc)
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        verbose=args.verbose,
        operator_namespace=env.get("POD_NAMESPACE") or None,
        pod_name=env.get("POD_NAME", ""),
        kube_server=env.get("BOOKGEN_KUBE_SERVER", ""),
        kubeconfig=env.get("KUBECONFIG", ""),
        reconcile_interval=float(env.get("BOOKGEN_RECONCILE_INTERVAL", "30")),
        discovery_ttl=float(env.get("BOOKGEN_DISCOVERY_TTL", "60")),
        secret_retry_seconds=max(30.0, float(env.get("BOOKGEN_SECRET_RETRY_SECONDS", "30"))),
        autoscaler=env.get("BOOKGEN_AUTOSCALER", "on").lower() not in _OFF,
        throttle_budget=float(env.get("BOOKGEN_KUBE_THROTTLE_BUDGET", "60")),
        lease_duration=float(env.get("BOOKGEN_LEASE_DURATION", "8")),
        renew_deadline=float(env.get("BOOKGEN_LEASE_RENEW_DEADLINE", "5")),
        lease_retry=float(env.get("BOOKGEN_LEASE_RETRY", "2")),
        standby_poll=float(env.get("BOOKGEN_LEASE_STANDBY_POLL", "1")),
        defaults=defaults,
        defaults_problem=problem,
    )


def settings_table() -> str:
    """The Markdown table of every setting (docs/operator.md holds it; tests/unit/test_config_operator.py
    checks it is current)."""
    rows = ["| setting | environment | flag | default | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(OperatorConfig):
        if f.metadata.get("internal"):
            continue
        env = ", ".join(f"`{name}`" for name in f.metadata["env"].split(", ")) if f.metadata["env"] else ""
        flag = f"`{f.metadata['flag']}`" if f.metadata["flag"] else ""
        shown = f.metadata["shown"] or f"`{f.default!r}`"
        rows.append(f"| `{f.name}` | {env} | {flag} | {shown} | {f.metadata['meaning']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
