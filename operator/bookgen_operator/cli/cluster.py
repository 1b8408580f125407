"""Reach a BookGenQueue on a cluster by its name: what `bookgen -n NS --queue NAME <command>` uses, and
what any command that needs a cluster queue can reuse (open_queue).

    with open_queue(QueueRef("books", namespace="writers"), os.environ) as queue:
        queue.redis_url   # redis://:<password>@127.0.0.1:<port>/0, valid inside the block only
        queue.kube        # the logged-in API client (kube.Kube), e.g. to port-forward to another pod
        queue.body        # the BookGenQueue as the API server has it

The steps, each with its own one-line error (kube.ClusterError): the kubeconfig and its context
(kube.login), the BookGenQueue (no such queue, no right to read it, no CRD), where its Redis is and
which Secret holds the password (queue_redis, from the spec: a managed Redis is the Service
`<name>-redis` and the Secret `<name>-redis` unless spec.redis.passwordSecretRef names another; an
external one is spec.redis.url), the password (no right to read the Secret, no such key), and a
port-forward through the API server to a ready Redis pod (none ready: the queue's Ready condition
says why). Nothing is copied by hand, and the password only ever lives in the URL handed to the
Redis client: messages show the URL redacted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from bookgen_operator.core.resources.labels import REDIS_PORT
from bookgen_operator.core.spec import GROUP, PLURAL, VERSION, RedisSpec

from .kube import REQUEST_TIMEOUT, ClusterError, Kube, api_errors, login
from .portforward import forward_service

#: Settings of the queue's processes (spec.env, plain values) that a client must share to find
#: their data: the key prefix and how priorities map to Redis lists.
CLIENT_SETTINGS = ("BOOKGEN_REDIS_KEYPREFIX", "BOOKGEN_PRIORITY_STEPS", "BOOKGEN_PRIORITY_SEPARATOR")
#: An external Redis named by a Service of the cluster (`<svc>.<ns>.svc[.cluster.local]`): forwarded too.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SERVICE_HOST = re.compile(rf"^({_LABEL})\.({_LABEL})\.svc(\.cluster\.local)?$")


@dataclass(frozen=True)
class QueueRef:
    """A BookGenQueue as a user names it, kubectl's way."""

    name: str
    namespace: str | None = None  # None: the context's namespace, else default
    context: str | None = None  # None: the kubeconfig's current context
    kubeconfig: str | None = None  # None: $KUBECONFIG, else ~/.kube/config


@dataclass(frozen=True)
class QueueRedis:
    """Where a queue's Redis is and which Secret key holds its password (from the spec alone)."""

    secret: str
    key: str
    service: str | None = None  # managed, or an external URL naming a Service: forwarded to
    service_namespace: str | None = None
    port: int = REDIS_PORT
    url: str | None = None  # external: the URL as written (no password), used as it is unless forwarded


@dataclass(frozen=True)
class QueueConnection:
    kube: Kube
    namespace: str
    name: str
    body: Mapping[str, Any]
    redis_url: str  # carries the password: never print it (bookgen_worker.config.redact)
    #: How messages name this system: "queue writers/books (context ci)".
    shown: str
    #: Environment the queue's processes share with clients (see CLIENT_SETTINGS).
    settings_env: Mapping[str, str] = field(default_factory=dict)
    #: Something to say on stderr, not an error (e.g. the queue is not Ready but Redis answers).
    note: str = ""
    #: What the API server or the kubelet last said when a forwarded connection failed ("" if nothing).
    forward_problem: Callable[[], str] = lambda: ""


def queue_redis(body: Mapping[str, Any]) -> QueueRedis:
    """Where the queue's Redis is, from its spec as stored (the API server applied the defaults).
    Reads only these fields, so a queue using fields this version does not know still works."""
    name = str(body["metadata"]["name"])
    redis = (body.get("spec") or {}).get("redis") or {}
    ref = redis.get("passwordSecretRef") or {}
    key = str(ref.get("key") or RedisSpec.password_secret_key)
    if redis.get("mode", "managed") != "external":
        return QueueRedis(secret=str(ref.get("name") or f"{name}-redis"), key=key, service=f"{name}-redis")
    url = str(redis.get("url") or "")
    if not ref.get("name") or not url:
        raise ClusterError(f"queue {name} uses an external Redis but names no URL or password Secret "
                           "(spec.redis.url, spec.redis.passwordSecretRef)")
    parts = urlsplit(url)
    found = _SERVICE_HOST.match(parts.hostname or "")
    if parts.scheme == "redis" and found:
        return QueueRedis(secret=str(ref["name"]), key=key, service=found.group(1),
                          service_namespace=found.group(3), port=parts.port or REDIS_PORT, url=url)
    return QueueRedis(secret=str(ref["name"]), key=key, url=url)


def client_settings(body: Mapping[str, Any]) -> dict[str, str]:
    """The CLIENT_SETTINGS the queue gives its processes as plain values in spec.env."""
    env = (body.get("spec") or {}).get("env") or []
    return {str(e["name"]): str(e.get("value", "")) for e in env
            if isinstance(e, Mapping) and e.get("name") in CLIENT_SETTINGS and "valueFrom" not in e}


def ready_condition(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"), None)


def not_ready(body: Mapping[str, Any]) -> str:
    """Why the queue is not Ready, from its status, for messages ("" when it is Ready)."""
    condition = ready_condition(body)
    if condition is None:
        return "it has no status yet (is the operator running?)"
    if condition.get("status") == "True":
        return ""
    return f"it is not Ready ({condition.get('reason', '?')}: {condition.get('message', '')})"


def read_queue(kube: Kube, namespace: str, name: str) -> Mapping[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(kube.api)
    with api_errors(kube, f"read BookGenQueues in namespace {namespace}",
                    not_found=f"no BookGenQueue {name} in namespace {namespace} (context {kube.context}; "
                              f"see kubectl get bookgenqueues -n {namespace})"):
        try:
            body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                       _request_timeout=REQUEST_TIMEOUT)
        except client.ApiException as exc:
            if exc.status == 404 and "the server could not find the requested resource" in str(exc.body or ""):
                raise ClusterError(f"the cluster of context {kube.context} has no BookGenQueue resource "
                                   "(is the operator's chart installed?)") from None
            raise
    if not isinstance(body, Mapping):
        raise ClusterError(f"the API server answered no object for BookGenQueue {namespace}/{name}")
    return body


def read_password(kube: Kube, namespace: str, secret: str, key: str) -> str:
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    with api_errors(kube, f"read Secret {secret} in namespace {namespace} (the Redis password)",
                    not_found=f"no Secret {secret} in namespace {namespace}: the queue's Redis password is not "
                              "there (yet?)"):
        found = core.read_namespaced_secret(secret, namespace, _request_timeout=REQUEST_TIMEOUT)
    raw = (found.data or {}).get(key)
    if raw is None:
        raise ClusterError(f"Secret {secret} in namespace {namespace} has no key {key!r} (the Redis password)")
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ClusterError(f"Secret {secret} in namespace {namespace}: key {key!r} is not a text password") from None


def with_password(url: str, password: str) -> str:
    """`url` (no credentials: the CRD refuses them) with the password in it."""
    parts = urlsplit(url)
    netloc = f":{quote(password, safe='')}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def forwarded_url(where: QueueRedis, port: int) -> str:
    """The Redis URL through a local port: the external URL's database and options, else database 0."""
    parts = urlsplit(where.url or "redis://x/0")
    return urlunsplit(("redis", f"127.0.0.1:{port}", parts.path or "/0", parts.query, ""))


@contextlib.contextmanager
def open_queue(ref: QueueRef, env: Mapping[str, str]) -> Iterator[QueueConnection]:
    """The queue's Redis URL for the block's duration (a port-forward is closed when it ends)."""
    kube = login(ref.kubeconfig, ref.context, env)
    namespace = ref.namespace or kube.namespace
    body = read_queue(kube, namespace, ref.name)
    where = queue_redis(body)
    password = read_password(kube, namespace, where.secret, where.key)
    shown = f"queue {namespace}/{ref.name} (context {kube.context})"
    why = not_ready(body)
    with contextlib.ExitStack() as stack:
        problem: Callable[[], str] = str  # "" : a direct connection has no forwarder to ask
        if where.service is None:  # an external Redis reached directly, as its URL says
            url, how, note = str(where.url), f"external Redis {where.url}", ""
        else:
            try:
                listener = stack.enter_context(forward_service(kube, where.service_namespace or namespace,
                                                               where.service, where.port))
            except ClusterError as exc:
                raise ClusterError(f"cannot reach the Redis of {shown}: {exc}" + (f"; {why}" if why else "")) from None
            url, how = forwarded_url(where, listener.port), f"Redis through a port-forward to 127.0.0.1:{listener.port}"
            note = f"queue {namespace}/{ref.name}: {why}; its Redis answers" if why else ""
            problem = listener.last_failure
        yield QueueConnection(kube, namespace, ref.name, body, with_password(url, password), f"{shown}, {how}",
                              client_settings(body), note, problem)
