"""How a test reaches what runs in the cluster, the way a user would or from inside its namespace:
`kubectl port-forward` through the API server (what a user types), HTTP to a Service by its DNS name
from a thread that entered the cluster's network namespace, `kubectl exec` into a container. Never a
packet from this machine's own namespace to a 10.x address."""

from __future__ import annotations

import base64
import contextlib
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.netcheck import dns_query, in_netns

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


@contextlib.contextmanager
def port_forward(kubectl: str, env: dict[str, str], namespace: str, target: str, port: int) -> Iterator[int]:
    """`kubectl port-forward -n NS TARGET :PORT`; yields the local port it chose; stopped by its PID."""
    proc = subprocess.Popen(
        [kubectl, "port-forward", "-n", namespace, "--address", "127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = _FORWARDING.search(line)
        if not found:
            proc.kill()
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"kubectl port-forward {target} did not start: {line}{err}")
        yield int(found.group(1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def service_get(netns_path: Path, name: str, namespace: str, port: int, path: str,
                auth: tuple[str, str] | None = None, timeout: float = 5.0) -> Answer:
    """GET http://NAME.NAMESPACE.svc.cluster.local:PORT/PATH from inside the cluster's namespace: the
    name resolved by the cluster's DNS, the connection made to the Service address (kube-proxy)."""
    fqdn = f"{name}.{namespace}.svc.cluster.local"

    def get() -> Answer:
        addresses = dns_query(fqdn)
        if not addresses:
            raise AssertionError(f"the cluster DNS has no address for {fqdn}")
        request = urllib.request.Request(f"http://{addresses[0]}:{port}{path}", headers={"Host": f"{fqdn}:{port}"})
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return Answer(r.status, r.read().decode(errors="replace"))
        except urllib.error.HTTPError as e:
            return Answer(e.code, e.read().decode(errors="replace"))

    return in_netns(netns_path, get, timeout=timeout + 5)
