"""A port on 127.0.0.1 that leads to a pod's port through the API server, as `kubectl port-forward`
does: no route to the cluster's network, only the API server's address and the kubeconfig's rights
(`create` on `pods/portforward`).

The `kubernetes` client's portforward gives one stream per call, which is one TCP connection to the
pod. A Redis client opens several (redis-py's pool, Celery's producer), so a listener on a free local
port opens a new stream for every connection it accepts and copies bytes both ways until either side
closes. Threads, not asyncio: the CLI is synchronous, and each connection needs only its copier.

`forward_service` does what `kubectl port-forward svc/NAME` does: the Service's selector picks the
pods, the first ready one is used, and the Service port's targetPort (a number or a container port's
name) is resolved on that pod.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .kube import REQUEST_TIMEOUT, ClusterError, Kube, api_errors, plain

_CHUNK = 256 * 1024
_HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")


class ForwardError(ClusterError):
    """A port-forward that cannot be opened; the message is one line and names the pod."""


class Stream(Protocol):
    """One forwarded connection: the socket to the pod's port, and what the API server said went wrong."""

    def fileno(self) -> int: ...
    def recv(self, size: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def shutdown(self, how: int) -> None: ...
    def close(self) -> None: ...


OpenStream = Callable[[], tuple[Stream, Callable[[], str | None]]]


def _copy(conn: socket.socket, stream: Stream, error: Callable[[], str | None], failures: list[str]) -> None:
    """Bytes both ways until one side closes; then both are closed."""
    try:
        while True:
            readable, _, _ = select.select([conn, stream], [], [])
            for source, sink in ((conn, stream), (stream, conn)):
                if source in readable:
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    sink.sendall(data)
    except OSError:
        return
    finally:
        problem = error()
        if problem:
            failures.append(problem.strip().splitlines()[0])
        for end in (conn, stream):
            with contextlib.suppress(OSError):
                end.close()


class Listener:
    """127.0.0.1:<free port>; every accepted connection gets its own stream from `open_stream`."""

    def __init__(self, open_stream: OpenStream) -> None:
        self._open = open_stream
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port: int = self._socket.getsockname()[1]
        #: What went wrong on streams already closed (the API server's or kubelet's words), newest last.
        self.failures: list[str] = []
        self._closed = threading.Event()
        self._open_ends: set[socket.socket | Stream] = set()  # closed with the listener, as kubectl's streams are
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"port-forward :{self.port}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name=f"port-forward :{self.port} copy",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            stream, error = self._open()
        except Exception as exc:  # the client sees a closed connection; the reason is kept for its message
            self.failures.append(_one_line(exc))
            conn.close()
            return
        with self._lock:
            if self._closed.is_set():
                stream.close()
                conn.close()
                return
            self._open_ends |= {conn, stream}
        try:
            _copy(conn, stream, error, self.failures)
        finally:
            with self._lock:
                self._open_ends -= {conn, stream}

    def last_failure(self) -> str:
        return self.failures[-1] if self.failures else ""

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)
        with self._lock:
            ends, self._open_ends = self._open_ends, set()
        for end in ends:  # shutdown, not close: it wakes the copier's select, which then closes both ends
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def listen(open_stream: OpenStream) -> Iterator[Listener]:
    listener = Listener(open_stream)
    try:
        yield listener
    finally:
        listener.close()


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def pod_stream(kube: Kube, namespace: str, pod: str, port: int) -> OpenStream:
    """Opens one stream to `pod`:`port` through the API server each time it is called."""
    from kubernetes import client
    from kubernetes.stream import portforward

    core = client.CoreV1Api(kube.api)

    def open_stream() -> tuple[Stream, Callable[[], str | None]]:
        try:
            forwarded = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port),
                                    _request_timeout=REQUEST_TIMEOUT)
        except client.ApiException as exc:
            raise ForwardError(_refused(exc, namespace, pod)) from None
        stream: Stream = forwarded.socket(port)
        return stream, lambda: forwarded.error(port)

    return open_stream


def _refused(exc: Any, namespace: str, pod: str) -> str:
    """The one-line reason a stream could not be opened (the websocket handshake's HTTP status)."""
    text = _one_line(exc)
    found = _HANDSHAKE_STATUS.search(text)
    status = int(found.group(1)) if found else int(getattr(exc, "status", 0) or 0)
    if status == 403:
        return (f"the kubeconfig's user may not port-forward to pod {pod} in namespace {namespace} "
                "(it needs create on pods/portforward)")
    if status == 404:
        return f"pod {pod} in namespace {namespace} is gone"
    if status == 401:
        return "the API server refused the kubeconfig's credentials (log in again)"
    return f"cannot port-forward to pod {pod} in namespace {namespace}: {text}"


def ready_pod(kube: Kube, namespace: str, service: str, port: int) -> tuple[str, int]:
    """The first ready pod behind `service`, and the pod's port that the Service's `port` leads to."""
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    with api_errors(kube, f"read Service {service} in namespace {namespace}",
                    not_found=f"no Service {service} in namespace {namespace}"):
        svc = plain(kube, core.read_namespaced_service(service, namespace, _request_timeout=REQUEST_TIMEOUT))
    spec = svc.get("spec") or {}
    ports = [p for p in spec.get("ports") or [] if p.get("port") == port]
    if not ports:
        raise ForwardError(f"Service {service} in namespace {namespace} has no port {port}")
    selector = spec.get("selector") or {}
    if not selector:
        raise ForwardError(f"Service {service} in namespace {namespace} selects no pods (no selector)")
    labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    with api_errors(kube, f"list pods in namespace {namespace}"):
        found = core.list_namespaced_pod(namespace, label_selector=labels, _request_timeout=REQUEST_TIMEOUT)
    pods = [plain(kube, p) for p in found.items]
    ready = sorted((p for p in pods if _ready(p)), key=lambda p: str(p["metadata"]["name"]))
    if not ready:
        raise ForwardError(f"no ready pod behind Service {service} in namespace {namespace} "
                           f"({len(pods)} pod(s) selected, none ready)")
    return str(ready[0]["metadata"]["name"]), _target_port(ready[0], ports[0].get("targetPort"), port)


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _target_port(pod: dict[str, Any], target: object, port: int) -> int:
    """A Service's targetPort on one pod: a number, a container port's name, or (unset) the port itself."""
    if target is None or target == "":
        return port
    if isinstance(target, int) or str(target).isdigit():
        return int(str(target))
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target:
                return int(declared["containerPort"])
    raise ForwardError(f"pod {pod['metadata']['name']} declares no port named {target}")


@contextlib.contextmanager
def forward_service(kube: Kube, namespace: str, service: str, port: int) -> Iterator[Listener]:
    """A local port (`.port`) leading to `service`:`port` (through one of its ready pods), for the block's duration.
    One stream is opened and closed first, so a refusal (no right, no pod) is an error here, in one
    line, and not a connection reset later inside a Redis client."""
    pod, pod_port = ready_pod(kube, namespace, service, port)
    open_stream = pod_stream(kube, namespace, pod, pod_port)
    probe, _ = open_stream()
    probe.close()
    with listen(open_stream) as listener:
        yield listener
