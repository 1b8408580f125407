"""A Kubernetes API emulator with the semantics our operator and autoscaler rely on.

kmock's `KubernetesEmulator` is a plain merge-dict store: no resourceVersion, uid or generation,
no label selectors, no `/status` separation, no garbage collection. This subclass keeps kmock's
HTTP server and API discovery (`emulator.resources`) and replaces the object store with one that
behaves like a (small) API server:

- every write bumps a global `metadata.resourceVersion`; a write that changes nothing does not
  (and emits no watch event), like a real API server;
- `uid`, `creationTimestamp`, `generation` (bumped only on changes outside metadata/status);
- `/status` is a separate subresource: main-resource writes ignore `status`, `/status` writes
  change only `status`; HTTP creates drop `status`;
- merge patch (RFC 7386), JSON patch (RFC 6902) and PUT; strategic merge patch is approximated
  by a merge patch (lists are replaced);
- optimistic concurrency on `metadata.resourceVersion` in patches/PUT (409 Conflict);
- 404 NotFound / 409 AlreadyExists like the API server;
- `labelSelector` (=, ==, !=, in, notin, exists, !exists) and `metadata.name`/`metadata.namespace`
  field selectors on list and watch; watches resume from `resourceVersion`;
- `generateName`; deletion honours finalizers (deletionTimestamp) and garbage-collects
  dependents by `ownerReferences` (background cascade);
- objects are stored the way a real API server stores them (`as_stored`): zero-valued `omitempty`
  fields are dropped (a probe's `initialDelaySeconds: 0`) and the usual defaults are filled in
  (container `imagePullPolicy`/`terminationMessagePath`, probe periods, port protocols, pod
  `restartPolicy`/`dnsPolicy`/`enableServiceLinks`, Deployment `strategy`, Service `clusterIP`...);
- deletes honour a `preconditions.uid` in DeleteOptions (409 Conflict when it does not match);
- `throttle(seconds, retry_after)`: answer every request with 429 and `Retry-After`, like API
  Priority and Fairness under load;
- a call log (`calls`) of every API request: verb, group, resource, subresource, ...;
- `write_hooks`: callables invoked with (call, request body) for every write, e.g. to validate
  status patches against a CRD schema.

Test-side helpers (`create_object`, `patch_object`, `delete_object`, `get_object`, `objects_of`)
change the store directly, emit the same watch events, and are not recorded as API calls.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import apps, parsing, rendering

JSON = dict[str, Any]
Key = tuple[str, str]  # (group, plural)


# --- kmock 0.8 fix: `/api/v1/namespaces[/<name>]` (the cluster-scoped namespaces resource) made
# parse_path() raise ValueError (it took "namespaces" for the namespace segment). Patched once.
_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return _original_parse_path(path)
    if rest and rest[0] == "namespaces" and len(rest) <= 2:
        name = rest[1] if len(rest) == 2 else None
        return parsing.ParsedPath(group, version, "namespaces", None, name, None)
    if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in ("status", "finalize"):
        return parsing.ParsedPath(group, version, "namespaces", None, rest[1], "/".join(rest[2:]))
    return _original_parse_path(path)


if getattr(parsing.parse_path, "__name__", "") != "_parse_path":
    parsing.parse_path = _parse_path


@dataclass(frozen=True)
class ApiCall:
    """One request the emulator served (the unit of operator/api-calls.json)."""

    verb: str  # get list watch create update patch delete deletecollection
    group: str
    resource: str
    subresource: str | None
    namespace: str | None = None
    name: str | None = None
    body: Any = field(default=None, compare=False, repr=False)
    #: The client's User-Agent (the audit log's userAgent): which process made the call.
    agent: str = field(default="", compare=False, repr=False)
    #: Query parameters (labelSelector, resourceVersion, ...).
    params: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_write(self) -> bool:
        return self.verb in ("create", "update", "patch", "delete", "deletecollection")

    def rbac_key(self) -> dict[str, Any]:
        return {"verb": self.verb, "group": self.group, "resource": self.resource, "subresource": self.subresource}


class ApiError(Exception):
    """An API error rendered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> aiohttp.web.Response:
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
             "code": self.code, "reason": self.reason, "message": self.message},
            status=self.code,
        )


def resource_key(resource: str | kmock.resource) -> Key:
    """'apps/v1/deployments', 'v1/pods', 'deployments.v1.apps' or a kmock.resource -> (group, plural)."""
    res = resource if isinstance(resource, kmock.resource) else kmock.resource(resource)
    if res.plural is None:
        raise ValueError(f"not a resource: {resource!r}")
    return (res.group or "", res.plural)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(target: JSON, ops: Iterable[Mapping[str, Any]]) -> JSON:
    """RFC 6902 JSON patch (test/add/remove/replace), enough for kopf's finalizer patches."""
    doc = copy.deepcopy(target)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        kind = op["op"]
        if kind == "test":
            current = node[int(last)] if isinstance(node, list) else node.get(last)
            if current != op.get("value"):
                raise ApiError(422, "Invalid", f"test operation failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(node, list):
                if last == "-":
                    node.append(op["value"])
                elif kind == "add":
                    node.insert(int(last), op["value"])
                else:
                    node[int(last)] = op["value"]
            else:
                node[last] = op["value"]
        elif kind == "remove":
            if isinstance(node, list):
                del node[int(last)]
            else:
                node.pop(last, None)
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
    return doc


_SELECTOR_TERM = re.compile(r"\s*(!?)\s*([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [*terms, current] if current.strip() else terms


def label_selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector syntax (equality- and set-based)."""
    for term in _split_selector(selector):
        match = _SELECTOR_TERM.match(term)
        if not match:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        negated, key, eq_op, eq_value, set_op, set_values = match.groups()
        if eq_op in ("=", "=="):
            ok = labels.get(key) == eq_value
        elif eq_op == "!=":
            ok = labels.get(key) != eq_value
        elif set_op:
            values = {v.strip() for v in set_values.split(",")}
            ok = labels.get(key) in values if set_op == "in" else labels.get(key) not in values
        else:
            ok = (key in labels) != bool(negated)
        if not ok:
            return False
    return True


#: omitempty scalar fields of probes (int32 without a pointer): a zero value is not stored.
_PROBE_OMITEMPTY = ("initialDelaySeconds",)
_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}


def _drop_zero(obj: dict[str, Any], fields: Iterable[str]) -> None:
    for name in fields:
        if name in obj and obj[name] in (0, "", False, None):
            del obj[name]


def _store_container(container: dict[str, Any]) -> None:
    image = str(container.get("image") or "")
    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            _drop_zero(probe, _PROBE_OMITEMPTY)
            for name, value in _PROBE_DEFAULTS.items():
                probe.setdefault(name, value)
    for env in container.get("env") or []:
        if env.get("value") == "":
            del env["value"]  # `value` is omitempty too


def _store_pod_spec(pod: dict[str, Any]) -> None:
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        _store_container(container)
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    pod.setdefault("enableServiceLinks", True)
    _drop_zero(pod, ("serviceAccountName", "nodeName", "hostname", "priorityClassName"))


def as_stored(key: Key, obj: JSON) -> JSON:
    """`obj` as kube-apiserver v1.36 stores it (a faithful subset: what our children use)."""
    obj = copy.deepcopy(obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return obj
    if key == ("", "pods"):
        _store_pod_spec(spec)
    elif key in (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets")):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        template = spec.setdefault("template", {})
        if isinstance(template.get("spec"), dict):
            _store_pod_spec(template["spec"])
        if key == ("apps", "deployments"):
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy.setdefault("type", "RollingUpdate")
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
        elif key == ("apps", "statefulsets"):
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    elif key == ("", "services"):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if "clusterIP" not in spec:
            spec["clusterIP"] = f"10.96.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]] if spec["clusterIP"] != "None" else ["None"])
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    return obj


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class K8sEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with API-server semantics (see the module docstring)."""

    calls: list[ApiCall] = attrs.field(factory=list, init=False)
    write_hooks: list[Callable[[ApiCall, Any], None]] = attrs.field(factory=list, init=False)
    hook_errors: list[str] = attrs.field(factory=list, init=False)
    _store: dict[Key, dict[tuple[str | None, str], JSON]] = attrs.field(factory=dict, init=False)
    _history: list[tuple[int, Key, JSON]] = attrs.field(factory=list, init=False)
    _watchers: list[tuple[Key, asyncio.Queue[tuple[int, JSON]]]] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=1, init=False)
    _throttled_until: float = attrs.field(default=0.0, init=False)
    _retry_after: str = attrs.field(default="1", init=False)
    throttled: int = attrs.field(default=0, init=False)

    def throttle(self, seconds: float, retry_after: int = 2) -> None:
        """Answer every API request with 429 Too Many Requests for `seconds` from now."""
        self._throttled_until, self._retry_after = time.monotonic() + seconds, str(retry_after)

    # ---------------------------------------------------------------- declarations
    def declare(
        self,
        resource: str,
        *,
        kind: str,
        namespaced: bool = True,
        subresources: Iterable[str] = (),
        shortnames: Iterable[str] = (),
    ) -> None:
        """Declare a resource for discovery (e.g. a CRD's group/version/plural with `status`)."""
        self.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, subresources=set(subresources), shortnames=set(shortnames),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
            singular=kind.lower(),
        )

    def _has_status(self, key: Key) -> bool:
        for res in self.resources:
            if (res.group or "", res.plural) == key:
                return "status" in self.resources[res].subresources
        return False

    def _known(self, key: Key) -> bool:
        return any((res.group or "", res.plural) == key for res in self.resources)

    # ---------------------------------------------------------------- test-side API
    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    def get_object(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        """The stored object (a deep copy) or None."""
        obj = self._store.get(resource_key(resource), {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects_of(self, resource: str, namespace: str | None = None, labels: str | None = None) -> list[JSON]:
        """All stored objects of a resource (deep copies), optionally filtered by namespace/selector."""
        found = []
        for (ns, _), obj in sorted(self._store.get(resource_key(resource), {}).items(), key=lambda kv: str(kv[0])):
            if namespace is not None and ns != namespace:
                continue
            if labels and not label_selector_matches(labels, obj["metadata"].get("labels") or {}):
                continue
            found.append(copy.deepcopy(obj))
        return found

    async def create_object(self, resource: str, body: JSON, *, namespace: str | None = None) -> JSON:
        """Create an object as a user would (status kept, no call logged)."""
        ns = namespace or body.get("metadata", {}).get("namespace")
        async with self._lock:
            return copy.deepcopy(self._do_create(resource_key(resource), ns, body, keep_status=True))

    async def patch_object(self, resource: str, namespace: str | None, name: str, patch: JSON,
                           *, subresource: str | None = None) -> JSON:
        """Merge-patch an object as a user/controller would (e.g. set Deployment status)."""
        async with self._lock:
            return copy.deepcopy(self._do_patch(resource_key(resource), namespace, name, patch,
                                                 "application/merge-patch+json", subresource))

    async def delete_object(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object as a user would (finalizers and garbage collection apply)."""
        async with self._lock:
            self._do_delete(resource_key(resource), namespace, name)

    def writes(self, since: int = 0) -> list[ApiCall]:
        """Write calls logged from index `since` on."""
        return [call for call in self.calls[since:] if call.is_write]

    def observed_calls(self) -> list[dict[str, Any]]:
        """Sorted unique {verb, group, resource, subresource} of every call (for RBAC)."""
        unique = {(c.verb, c.group, c.resource, c.subresource or "") for c in self.calls}
        return [{"verb": v, "group": g, "resource": r, "subresource": s or None} for v, g, r, s in sorted(unique)]

    # ---------------------------------------------------------------- store internals
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, key: Key, event_type: str, obj: JSON) -> None:
        rv = int(obj["metadata"]["resourceVersion"]) if event_type != "DELETED" else self._next_rv()
        event = {"type": event_type, "object": copy.deepcopy(obj)}
        self._history.append((rv, key, event))
        for watch_key, queue in self._watchers:
            if watch_key == key:
                queue.put_nowait((rv, event))

    def _do_create(self, key: Key, namespace: str | None, body: JSON, *, keep_status: bool) -> JSON:
        if not self._known(key):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource {key[1]}")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if namespace is not None:
            meta["namespace"] = namespace
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        objects = self._store.setdefault(key, {})
        ident = (meta.get("namespace"), meta["name"])
        if ident in objects:
            raise ApiError(409, "AlreadyExists", f'{key[1]} "{meta["name"]}" already exists')
        if not keep_status:
            obj.pop("status", None)
        obj = as_stored(key, obj)
        meta = obj["metadata"]
        for volatile in ("resourceVersion", "uid", "deletionTimestamp"):
            meta.pop(volatile, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1,
                    resourceVersion=str(self._next_rv()))
        objects[ident] = obj
        self._emit(key, "ADDED", obj)
        return obj

    def _get(self, key: Key, namespace: str | None, name: str) -> JSON:
        obj = self._store.get(key, {}).get((namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{key[1]} "{name}" not found')
        return obj

    def _store_update(self, key: Key, old: JSON, new: JSON, subresource: str | None) -> JSON:
        """Apply the write rules shared by patch and PUT; no-op writes change nothing."""
        meta = new.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "name", "namespace", "generation", "deletionTimestamp"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if subresource == "status":
            new = {**copy.deepcopy(old), "status": new.get("status")}
            if new["status"] is None:
                new.pop("status")
        elif self._has_status(key):
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        if subresource is None:
            new = as_stored(key, new)
            meta = new["metadata"]
        if new == old:
            return old
        spec_of = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
        if spec_of(new) != spec_of(old):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = str(self._next_rv())
        self._store[key][(meta.get("namespace"), meta["name"])] = new
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(key, new)
        else:
            self._emit(key, "MODIFIED", new)
        return new

    def _check_rv(self, old: JSON, wanted: str | None) -> None:
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified; please apply your changes to the latest "
                                            "version and try again")

    def _do_patch(self, key: Key, namespace: str | None, name: str, patch: Any, content_type: str,
                  subresource: str | None) -> JSON:
        old = self._get(key, namespace, name)
        if "json-patch" in content_type:
            new = json_patch(old, patch)
        else:  # merge-patch; strategic-merge-patch approximated (lists are replaced)
            if not isinstance(patch, Mapping):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            self._check_rv(old, (patch.get("metadata") or {}).get("resourceVersion"))
            new = merge_patch(old, patch)
        return self._store_update(key, old, new, subresource)

    def _do_replace(self, key: Key, namespace: str | None, name: str, body: JSON, subresource: str | None) -> JSON:
        old = self._get(key, namespace, name)
        self._check_rv(old, (body.get("metadata") or {}).get("resourceVersion"))
        return self._store_update(key, old, copy.deepcopy(body), subresource)

    def _do_delete(self, key: Key, namespace: str | None, name: str) -> JSON:
        obj = self._get(key, namespace, name)
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                self._store[key][(namespace, name)] = obj
                self._emit(key, "MODIFIED", obj)
            return obj
        self._remove(key, obj)
        return obj

    def _remove(self, key: Key, obj: JSON) -> None:
        """Remove an object and garbage-collect its dependents (background cascade)."""
        meta = obj["metadata"]
        self._store[key].pop((meta.get("namespace"), meta["name"]), None)
        self._emit(key, "DELETED", obj)
        uid = meta["uid"]
        for dep_key, objects in list(self._store.items()):
            for (ns, dep_name), dep in list(objects.items()):
                owners = dep["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in owners) and (ns, dep_name) in objects:
                    self._do_delete(dep_key, ns, dep_name)

    def _select(self, key: Key, namespace: str | None, params: Mapping[str, str]) -> list[JSON]:
        labels = params.get("labelSelector") or ""
        fields = dict(term.split("=", 1) for term in (params.get("fieldSelector") or "").split(",") if "=" in term)
        found = []
        for (ns, name), obj in self._store.get(key, {}).items():
            if namespace is not None and ns != namespace:
                continue
            if fields.get("metadata.name", name) != name or fields.get("metadata.namespace", ns) != ns:
                continue
            if labels and not label_selector_matches(labels, obj["metadata"].get("labels") or {}):
                continue
            found.append(obj)
        return found

    # ---------------------------------------------------------------- HTTP
    @staticmethod
    def _verb(request: rendering.Request) -> str:
        method = str(request.method.value).upper()
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        if request.name is None:
            return {"GET": "list", "POST": "create", "DELETE": "deletecollection"}.get(method, method.lower())
        return {"GET": "get", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or res.plural is None:  # discovery, /version, non-Kubernetes paths
            return await apps.RawHandler._handle(self, request)
        key = (res.group or "", res.plural)
        if time.monotonic() < self._throttled_until:
            self.throttled += 1
            response = ApiError(429, "TooManyRequests", "Too many requests, please try again later.").response()
            response.headers["Retry-After"] = self._retry_after
            return response
        verb = self._verb(request)
        call = ApiCall(verb, key[0], key[1], request.subresource, request.namespace, request.name, request.data,
                       request.headers.get("User-Agent", ""), dict(request.params))
        self.calls.append(call)
        if call.is_write:
            for hook in self.write_hooks:
                try:
                    hook(call, request.data)
                except Exception as exc:  # a failed check must reach the test, not crash the server
                    self.hook_errors.append(f"{call.verb} {call.resource}/{call.subresource}: {exc}")
        try:
            if verb == "watch":
                return await self._watch(request, key)
            async with self._lock:
                if not self._known(key):
                    raise ApiError(404, "NotFound", f"the server could not find the requested resource {key[1]}")
                result = self._serve(request, key, verb)
        except ApiError as exc:
            return exc.response()
        return aiohttp.web.json_response(result, status=201 if verb == "create" else 200)

    def _serve(self, request: rendering.Request, key: Key, verb: str) -> JSON:
        ns, name, sub = request.namespace, request.name, request.subresource
        if verb == "list":
            items = sorted(self._select(key, ns, request.params), key=lambda o: o["metadata"]["name"])
            # Like kube-apiserver: apiVersion and kind are on the list (kind "<Kind>List"), not on its items.
            kinds = {o.get("kind") for o in items}
            kind = kinds.pop() if len(kinds) == 1 else ""
            api_version = items[0].get("apiVersion", "v1") if items else "v1"
            stripped = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in copy.deepcopy(items)]
            return {"kind": f"{kind}List" if kind else "List", "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(self._rv)}, "items": stripped}
        if verb == "get":
            return copy.deepcopy(self._get(key, ns, name or ""))
        if verb == "create":
            if not isinstance(request.data, Mapping):
                raise ApiError(400, "BadRequest", "the body of a create must be a JSON object")
            return copy.deepcopy(self._do_create(key, ns, request.data, keep_status=False))
        if verb == "patch":
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            return copy.deepcopy(self._do_patch(key, ns, name or "", request.data, content_type, sub))
        if verb == "update":
            return copy.deepcopy(self._do_replace(key, ns, name or "", request.data, sub))
        if verb == "delete":
            wanted_uid = ((request.data or {}).get("preconditions") or {}).get("uid") \
                if isinstance(request.data, Mapping) else None
            if wanted_uid and self._get(key, ns, name or "")["metadata"]["uid"] != wanted_uid:
                raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {wanted_uid}")
            return copy.deepcopy(self._do_delete(key, ns, name or ""))
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported by the emulator")

    async def _watch(self, request: rendering.Request, key: Key) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        since = int(request.params.get("resourceVersion") or 0)
        queue: asyncio.Queue[tuple[int, JSON]] = asyncio.Queue()
        # Replay and subscribe without an await in between, so no event is lost or duplicated.
        if since:
            backlog = [(rv, ev) for rv, k, ev in self._history if k == key and rv > since]
        else:
            backlog = [(int(o["metadata"]["resourceVersion"]), {"type": "ADDED", "object": copy.deepcopy(o)})
                       for o in self._select(key, request.namespace, {})]
        for item in backlog:
            queue.put_nowait(item)
        entry = (key, queue)
        self._watchers.append(entry)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            while deadline is None or loop.time() < deadline:
                if raw.transport is None or raw.transport.is_closing():
                    break
                try:
                    _, event = await asyncio.wait_for(queue.get(), timeout=0.5)
                except TimeoutError:
                    continue
                obj = event["object"]
                meta = obj["metadata"]
                if request.namespace is not None and meta.get("namespace") != request.namespace:
                    continue
                if not self._select_one(obj, request.params):
                    continue
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.remove(entry)
        return response

    @staticmethod
    def _select_one(obj: JSON, params: Mapping[str, str]) -> bool:
        labels = params.get("labelSelector") or ""
        if labels and not label_selector_matches(labels, obj["metadata"].get("labels") or {}):
            return False
        for term in (params.get("fieldSelector") or "").split(","):
            if "=" in term:
                field_name, value = term.split("=", 1)
                if obj["metadata"].get(field_name.removeprefix("metadata.")) != value:
                    return False
        return True


def default_emulator() -> K8sEmulator:
    """An emulator knowing the built-in resources (kmock's bundled discovery data)."""
    emulator = K8sEmulator()
    emulator.resources.load_bundled()
    return emulator


async def start_emulator(emulator: K8sEmulator | None = None) -> tuple[K8sEmulator, kmock.Server]:
    """Enter the emulator and an HTTP server for it; the caller must `stop_emulator` them."""
    emulator = default_emulator() if emulator is None else emulator
    await emulator.__aenter__()
    server = kmock.Server(emulator)
    await server.__aenter__()
    return emulator, server


async def stop_emulator(emulator: K8sEmulator, server: kmock.Server) -> None:
    await server.__aexit__(None, None, None)
    await emulator.__aexit__(None, None, None)
