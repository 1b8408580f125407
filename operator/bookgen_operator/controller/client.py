"""A thin async adapter over the Kubernetes API (httpx), used by the reconcile glue.

kopf owns the watches; this adapter does the reads and writes of our children (get, list, create,
merge-patch, delete, status merge-patch) and API discovery.

Why our own client and not the `kubernetes` package: the operator is asyncio end to end (kopf), and
needs only these verbs on plain JSON; the official client is synchronous (threads per call), its
typed models would be converted back to dicts at once, and it would log in separately from kopf.
This adapter reuses kopf's login (one identity, refreshed together) and adds API etiquette in one
place: a 429 (API Priority and Fairness) or 503 with `Retry-After` is waited out and retried.

Credentials come from kopf's login (see controller/handlers.py, login), read afresh on every request, so kopf's
re-login on expiry also refreshes ours.
Request bodies are never logged (they may carry Secrets); errors name the object, not its content.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import httpx

from bookgen_operator.core.objects import JSON, Body

log = logging.getLogger(__name__)
#: Longest total wait on 429/503 answers for one request before it fails (the caller retries later);
#: the operator passes its configured budget (BOOKGEN_KUBE_THROTTLE_BUDGET).
THROTTLE_BUDGET = 60.0


def retry_after(headers: Mapping[str, str], default: float = 1.0) -> float:
    """Seconds to wait as the server asks (`Retry-After` in seconds), within [0.1, 30]."""
    try:
        value = float(headers.get("Retry-After") or default)
    except ValueError:
        value = default
    return min(max(value, 0.1), 30.0)


#: Connections to the API server at once (HTTP/1.1: one request each). kube-apiserver's API Priority
#: and Fairness queues what exceeds a client's share, so more would only wait there instead of here.
#: Few: httpcore checks every pooled connection for expiry on each request (through anyio's
#: get_extra_info, which builds all of a TLS stream's attributes each time): with 32, that check was
#: a tenth of the operator's CPU at 250 queues (py-spy); 8 requests at once carry ~75 a second.
MAX_CONNECTIONS = 8


class KubeError(Exception):
    """An API error with the server's status code and reason (e.g. 404 NotFound, 409 AlreadyExists)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


#: Every kind the operator reads or writes, by (apiVersion, kind).
RESOURCES: Mapping[tuple[str, str], Resource] = MappingProxyType({
    ("v1", "Secret"): Resource("", "v1", "secrets"),
    ("v1", "Service"): Resource("", "v1", "services"),
    ("v1", "ConfigMap"): Resource("", "v1", "configmaps"),
    ("v1", "ServiceAccount"): Resource("", "v1", "serviceaccounts"),
    ("v1", "Pod"): Resource("", "v1", "pods"),
    ("v1", "PersistentVolumeClaim"): Resource("", "v1", "persistentvolumeclaims"),
    ("apps/v1", "Deployment"): Resource("apps", "v1", "deployments"),
    ("apps/v1", "StatefulSet"): Resource("apps", "v1", "statefulsets"),
    ("policy/v1", "PodDisruptionBudget"): Resource("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io/v1", "NetworkPolicy"): Resource("networking.k8s.io", "v1", "networkpolicies"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): Resource("monitoring.coreos.com", "v1", "servicemonitors"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): Resource("monitoring.coreos.com", "v1", "prometheusrules"),
    ("bookgen.io/v1alpha1", "BookGenQueue"): Resource("bookgen.io", "v1alpha1", "bookgenqueues"),
    ("coordination.k8s.io/v1", "Lease"): Resource("coordination.k8s.io", "v1", "leases"),
})


def resource_for(api_version: str, kind: str) -> Resource:
    try:
        return RESOURCES[(api_version, kind)]
    except KeyError:
        raise KubeError(400, "UnknownKind", f"the operator does not know where {api_version} {kind} lives") from None


@dataclass(frozen=True)
class Connection:
    """What the adapter needs from kopf.ConnectionInfo (duck-typed: any object with these fields)."""

    server: str
    ca_path: str | None = None
    ca_data: str | bytes | None = None
    insecure: bool | None = None
    scheme: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    certificate_path: str | None = None
    certificate_data: str | bytes | None = None
    private_key_path: str | None = None
    private_key_data: str | bytes | None = None


#: A file path as kopf's ConnectionInfo may hold one.
PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class Credentials(Protocol):
    """What the client reads of a login: kopf.ConnectionInfo, or a Connection (tests, tools)."""

    @property
    def server(self) -> str: ...
    @property
    def ca_path(self) -> PathArg | None: ...
    @property
    def ca_data(self) -> str | bytes | None: ...
    @property
    def insecure(self) -> bool | None: ...
    @property
    def scheme(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def certificate_path(self) -> PathArg | None: ...
    @property
    def certificate_data(self) -> str | bytes | None: ...
    @property
    def private_key_path(self) -> PathArg | None: ...
    @property
    def private_key_data(self) -> str | bytes | None: ...


def _pem_file(data: str | bytes) -> str:
    """kopf keeps inline PEM data base64-encoded or raw; ssl needs a file."""
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        raw = base64.b64decode(raw)
    handle = tempfile.NamedTemporaryFile(prefix="bookgen-kube-", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        handle.write(raw)
    os.chmod(handle.name, 0o600)
    return handle.name


def _ssl_context(info: Credentials) -> ssl.SSLContext | bool:
    if getattr(info, "insecure", False):
        return False
    ca_path = getattr(info, "ca_path", None)
    ca_data = getattr(info, "ca_data", None)
    context = ssl.create_default_context(cafile=ca_path or (_pem_file(ca_data) if ca_data else None))
    cert_data, key_data = getattr(info, "certificate_data", None), getattr(info, "private_key_data", None)
    cert = getattr(info, "certificate_path", None) or (_pem_file(cert_data) if cert_data else None)
    key = getattr(info, "private_key_path", None) or (_pem_file(key_data) if key_data else None)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def default_user_agent() -> str:
    """This process in the API server's audit log; the operator names its replica (OperatorConfig.user_agent)."""
    return f"bookgen-operator/0.1 ({os.uname().nodename}/{os.getpid()})"


def _headers(info: Credentials, user_agent: str) -> dict[str, str]:
    headers = {"User-Agent": user_agent}
    token = getattr(info, "token", None)
    if token:
        headers["Authorization"] = f"{getattr(info, 'scheme', None) or 'Bearer'} {token}"
        return headers
    user, password = getattr(info, "username", None), getattr(info, "password", None)
    if user and password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return headers


class Kube:
    """Async API client; `credentials()` returns the current kopf.ConnectionInfo (or a Connection)."""

    def __init__(self, credentials: Callable[[], Credentials | None], *, timeout: float = 30.0,
                 may_write: Callable[[], bool] | None = None, user_agent: str | None = None,
                 throttle_budget: float = THROTTLE_BUDGET) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._user_agent = user_agent or default_user_agent()
        self._throttle_budget = throttle_budget
        #: Checked before every write: False (e.g. leadership lost) refuses the write, never sends it.
        self._may_write = may_write
        #: One HTTP client per (event loop, endpoint and TLS identity): clients cannot cross loops.
        self._clients: dict[tuple[object, ...], httpx.AsyncClient] = {}
        #: Requests in flight per client, at most its connections: the rest wait here, not in httpcore's pool,
        #: whose every hand-over scans all waiting requests (with 250 queues reconciling, a third of the
        #: operator's CPU went to that scan).
        self._slots: dict[int, asyncio.Semaphore] = {}  # by id() of the client

    def _session(self) -> tuple[httpx.AsyncClient, dict[str, str]]:
        info = self._credentials()
        if info is None:
            raise KubeError(401, "NoCredentials", "kopf has not logged in to the cluster yet")
        ident = (id(asyncio.get_running_loop()), info.server, getattr(info, "ca_path", None),
                 getattr(info, "ca_data", None), getattr(info, "insecure", None),
                 getattr(info, "certificate_path", None))
        client = self._clients.get(ident)
        if client is None:
            # Many queues reconcile at once: a request waits for a free connection as long as it takes
            # (backpressure, not an error); connect, read and write keep their own timeouts.
            client = httpx.AsyncClient(base_url=info.server.rstrip("/"), verify=_ssl_context(info),
                                       timeout=httpx.Timeout(self._timeout, pool=None),
                                       limits=httpx.Limits(max_connections=MAX_CONNECTIONS,
                                                           max_keepalive_connections=MAX_CONNECTIONS))
            self._clients[ident] = client
            self._slots[id(client)] = asyncio.Semaphore(MAX_CONNECTIONS)
        return client, _headers(info, self._user_agent)

    async def close(self) -> None:
        """Close this loop's clients; forget those of loops that are gone (they cannot be closed now)."""
        loop_id = id(asyncio.get_running_loop())
        clients, self._clients = self._clients, {}
        self._slots = {}
        for ident, client in clients.items():
            if ident[0] == loop_id:
                await client.aclose()

    async def _request(self, method: str, path: str, *, body: object = None, content_type: str | None = None,
                       params: Mapping[str, str] | None = None) -> JSON:
        deadline = time.monotonic() + self._throttle_budget
        while True:
            if method != "GET" and self._may_write is not None and not self._may_write():
                raise KubeError(503, "NotLeader", f"{method} {path}: this operator is not the leader; not writing")
            client, headers = self._session()
            if content_type:
                headers["Content-Type"] = content_type
            async with self._slots[id(client)]:
                response = await client.request(method, path, json=body, headers=headers, params=params)
            code = response.status_code
            throttled = code == 429 or (code == 503 and "Retry-After" in response.headers)
            if not throttled or time.monotonic() >= deadline:
                break
            wait = min(retry_after(response.headers), max(0.1, deadline - time.monotonic()))
            log.info("%s %s: the API server asks to retry in %.1fs (%d)", method, path, wait, response.status_code)
            await asyncio.sleep(wait)
        if response.status_code >= 400:
            try:
                status = response.json()
                reason, message = status.get("reason") or "Error", status.get("message") or response.text[:200]
            except ValueError:
                reason, message = "Error", response.text[:200]
            raise KubeError(response.status_code, reason, f"{method} {path}: {message}")
        return response.json() if response.content else {}

    async def get(self, res: Resource, namespace: str | None, name: str) -> JSON | None:
        try:
            return await self._request("GET", res.path(namespace, name))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def list(self, res: Resource, namespace: str | None = None, labels: str | None = None) -> list[JSON]:
        return (await self.list_versioned(res, namespace, labels))[0]

    async def list_versioned(self, res: Resource, namespace: str | None = None,
                             labels: str | None = None) -> tuple[builtins.list[JSON], str | None]:
        """The items and the list's resourceVersion (the snapshot they were read at; None if not given)."""
        params = {"labelSelector": labels} if labels else None
        answer = await self._request("GET", res.path(namespace), params=params)
        # A real API server leaves apiVersion and kind out of list items (they are on the list): put
        # them back, so an item compares like the same object read on its own.
        kind = str(answer.get("kind") or "").removesuffix("List")
        items = list(answer.get("items") or [])
        for item in items:
            item.setdefault("apiVersion", answer.get("apiVersion") or res.api_version)
            if kind:
                item.setdefault("kind", kind)
        version = (answer.get("metadata") or {}).get("resourceVersion")
        return items, str(version) if version else None

    async def create(self, res: Resource, namespace: str | None, body: Body) -> JSON:
        return await self._request("POST", res.path(namespace), body=dict(body))

    async def patch(self, res: Resource, namespace: str | None, name: str, patch: Body,
                    *, subresource: str | None = None) -> JSON:
        return await self._request("PATCH", res.path(namespace, name, subresource), body=dict(patch),
                                   content_type="application/merge-patch+json")

    async def delete(self, res: Resource, namespace: str | None, name: str, *, uid: str | None = None) -> None:
        """Delete one object (background cascade); `uid` makes the delete apply only to that very object
        (a precondition), never to a namesake created since. Already gone counts as done."""
        body: JSON = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._request("DELETE", res.path(namespace, name), body=body)
        except KubeError as exc:
            if exc.code != 404:
                raise

    async def api_groups(self) -> set[str]:
        """Names of the API groups the server serves (discovery), e.g. {'apps', 'monitoring.coreos.com'}."""
        data = await self._request("GET", "/apis")
        return {group.get("name", "") for group in data.get("groups") or []}


def decoded(secret: Body, key: str) -> str | None:
    """One value of a Secret, decoded (stringData counts too, as a user may have just written it)."""
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw is not None else None


async def ensure_secret(kube: Kube, body: Body) -> tuple[JSON, bool]:
    """Create the Secret `body` if no Secret of that name exists; never touch an existing one, so
    generated passwords stay stable for the lifetime of the queue. Returns (the Secret, created?)."""
    res = RESOURCES[("v1", "Secret")]
    meta = body["metadata"]
    existing = await kube.get(res, meta["namespace"], meta["name"])
    if existing is not None:
        return existing, False
    try:
        return await kube.create(res, meta["namespace"], body), True
    except KubeError as exc:
        if exc.code != 409:  # 409: created concurrently; that value wins and stays stable
            raise
    existing = await kube.get(res, meta["namespace"], meta["name"])
    if existing is None:
        raise KubeError(409, "Conflict", f"Secret {meta['name']} appeared and vanished while being created")
    return existing, False
