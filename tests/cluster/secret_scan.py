"""No secret in any output (issue 26, acceptance 5): the pod logs, Events, BookGenQueue statuses and the
operator's logs of a cluster test run, searched for the value of every Secret the run made or the
product made for it.

Three layers:
- pure: `secret_values` picks the values worth searching for out of Secret objects, `scan` searches
  texts for each value as it is and in base64, and a `Finding` says where (namespace/pod/container,
  event, status, file) and which Secret, never the value: a fingerprint (SHA-256 prefix) and the line
  with every known secret masked;
- collectors: `namespace_texts` reads every container's log (current, and previous when it restarted)
  of every pod of a namespace, its Events and its BookGenQueues' statuses;
- the ledger, `SecretScan`: one per session (tests/cluster/conftest.py puts it on the `cluster`), what
  was scanned and what was found. The teardown paths call `scan_namespace` before anything of a
  namespace goes away (Cluster.delete_namespace, product.delete_queue_and_namespace,
  operator_pods.uninstall and OperatorPods.stop, prometheus_stack.remove, the kubeconfig tests'
  namespace), and tests/cluster/test_secret_scan.py judges it last.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubernetes import client

if TYPE_CHECKING:
    from tests.cluster.conftest import Cluster

#: Shorter values are not searched for: every generated password is 43 characters (token_urlsafe(32)),
#: and a value as short as "admin" (Flower's user name) is an ordinary word in any log.
MIN_LENGTH = 8
#: Secret types whose values are public by design.
PUBLIC_TYPES = {"helm.sh/release.v1": "Helm's record of a release (the chart's rendered manifests)"}
#: Keys that hold identifiers, not secrets: a user name, an S3 access key id (sent in clear in every
#: S3 request's Authorization header, and printed by S3 servers in their logs, as a user name is).
#: And a ServiceAccount token Secret's `namespace`, a name that every log of that namespace prints.
PUBLIC_KEYS = frozenset({"username", "user", "access", "accesskeyid", "awsaccesskeyid", "rootaccesskeyid",
                         "namespace"})
EXCERPT = 80  # characters kept either side of a masked secret in a finding's excerpt
GROUP, VERSION, PLURAL = "bookgen.io", "v1alpha1", "bookgenqueues"


@dataclass(frozen=True)
class SecretValue:
    label: str  # namespace/name/key: says which Secret, never what it holds
    kind: str  # "redis password", "flower password", "API key", "other"
    value: str = field(repr=False, compare=True)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:12]

    def needles(self) -> dict[str, str]:
        """Every string whose presence shows the value, -> the form it is in."""
        found = {core: "base64" for core in base64_cores(self.value.encode())}
        found[self.value] = "plain"
        return found

    def __str__(self) -> str:
        return f"{self.label} ({self.kind}, {len(self.value)} chars, sha256 {self.fingerprint})"


def base64_cores(raw: bytes) -> set[str]:
    """The characters of the base64 (standard and URL-safe) of `raw` that do not depend on what comes
    before or after it, for each of the three alignments it can have inside longer encoded data (a
    Secret's `data`, a JSON value, a basic-auth header)."""
    cores = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw).decode()
            # Character i carries bits [6i, 6i+6): keep those entirely inside raw's bits.
            cores.add(text[-(-8 * offset // 6):8 * (offset + len(raw)) // 6])
    return cores


def kind_of(name: str, key: str) -> str:
    if key == "password" and name.endswith("-redis"):
        return "redis password"
    if key == "password" and name.endswith("-flower-auth"):
        return "flower password"
    squashed = key.lower().replace("-", "").replace("_", "")
    return "API key" if "apikey" in squashed else "other"


def secret_values(secrets: Iterable[client.V1Secret]) -> tuple[list[SecretValue], dict[str, str]]:
    """(the values to search for, the label of each one left out -> why)."""
    values: list[SecretValue] = []
    skipped: dict[str, str] = {}
    for secret in secrets:
        meta = secret.metadata
        for key, encoded in (secret.data or {}).items():
            label = f"{meta.namespace}/{meta.name}/{key}"
            why = PUBLIC_TYPES.get(secret.type or "") or _public(key, encoded)
            if why:
                skipped[label] = why
            else:
                values.append(SecretValue(label, kind_of(meta.name, key), base64.b64decode(encoded).decode()))
    return values, skipped


def _public(key: str, encoded: str) -> str:
    """Why a value is not searched for, or ""."""
    if key.lower().replace("-", "").replace("_", "") in PUBLIC_KEYS:
        return "an identifier (user name, access key id)"
    try:
        value = base64.b64decode(encoded).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "binary (not text a log could print)"
    if len(value) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters"
    if "-----BEGIN CERTIFICATE-----" in value and "PRIVATE KEY" not in value:
        return "a certificate (public)"
    return ""


@dataclass(frozen=True)
class Finding:
    where: str  # namespace/pod/<pod>/<container>, namespace/event/<name>, namespace/bookgenqueue/<name>, file
    secret: str  # the SecretValue's label
    kind: str
    form: str  # plain or base64
    fingerprint: str
    line: int
    excerpt: str  # the line, every known secret masked

    def __str__(self) -> str:
        return (f"{self.where}: {self.kind} {self.secret} (sha256 {self.fingerprint}) in {self.form}, "
                f"line {self.line}: {self.excerpt}")


def mask(text: str, secrets: Iterable[SecretValue]) -> str:
    pairs = sorted(((n, s.label) for s in secrets for n in s.needles()), key=lambda p: -len(p[0]))
    for needle, label in pairs:
        text = text.replace(needle, f"«{label}»")
    return text


def scan(texts: Mapping[str, str], secrets: Iterable[SecretValue]) -> list[Finding]:
    """Each (text, secret, form) found, once, at its first line."""
    known = list(secrets)
    needles = [(needle, form, s) for s in known for needle, form in s.needles().items()]
    findings = []
    for where, text in texts.items():
        for needle, form, secret in needles:
            at = text.find(needle)
            if at < 0:
                continue
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            line = mask(text[start:len(text) if end < 0 else end], known)
            centre = max(line.find("«"), 0)
            excerpt = line[max(centre - EXCERPT, 0):centre + EXCERPT]
            findings.append(Finding(where, secret.label, secret.kind, form, secret.fingerprint,
                                    text.count("\n", 0, at) + 1, excerpt))
    return findings


@dataclass
class SecretScan:
    """What a session scanned and found (kept by the `cluster` fixture, judged by the last test)."""

    audit_mark: int = 0
    namespaces: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)  # namespace/name of each BookGenQueue whose status was read
    counts: Counter[str] = field(default_factory=Counter)  # texts by kind, and "bytes"
    skipped: dict[str, str] = field(default_factory=dict)  # label of each value not searched for -> why
    known: dict[tuple[str, str], SecretValue] = field(default_factory=dict, repr=False)
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    judged: bool = False

    def learn(self, secrets: Iterable[client.V1Secret]) -> None:
        """Remember every value: a Secret outlives its namespace here, so a log read later (the
        operator's, at its stop) is still searched for the values of queues deleted before."""
        values, skipped = secret_values(secrets)
        self.skipped.update(skipped)
        for value in values:
            self.known.setdefault((value.label, value.fingerprint), value)

    def judge(self, texts: Mapping[str, str]) -> list[Finding]:
        self.counts["bytes"] += sum(len(t) for t in texts.values())
        found = scan(texts, self.known.values())
        self.findings += found
        return found

    def secret_kinds(self) -> Counter[str]:
        return Counter(v.kind for v in self.known.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.secret_kinds().items()))
        texts = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()) if k != "bytes")
        skipped = "; ".join(f"{n} {why}" for why, n in sorted(Counter(self.skipped.values()).items()))
        return (f"secret scan: {len(self.namespaces)} namespaces, {len(self.queues)} queues; texts: {texts}; "
                f"{self.counts['bytes'] / 1e6:.1f} MB; {len(self.known)} secret values ({kinds}); "
                f"not searched: {skipped or 'none'}; {self.seconds:.1f} s; {len(self.findings)} findings, "
                f"{len(self.errors)} errors")


def _log(core: client.CoreV1Api, namespace: str, pod: str, container: str, previous: bool) -> str | None:
    try:
        response = core.read_namespaced_pod_log(pod, namespace, container=container, previous=previous,
                                                _preload_content=False)
    except client.ApiException as e:
        if e.status in (400, 404):  # not started yet, or no previous run, or gone
            return None
        raise
    return str(response.data.decode(errors="replace"))


def namespace_texts(cluster: Cluster, namespace: str, ledger: SecretScan) -> dict[str, str]:
    """Every container's log of every pod, every Event, every BookGenQueue's status, by where."""
    core, texts = cluster.core, {}
    for pod in core.list_namespaced_pod(namespace).items:
        name = pod.metadata.name
        ledger.counts["pods"] += 1
        statuses = {s.name: s for s in (pod.status.init_container_statuses or [])
                    + (pod.status.container_statuses or [])}
        for container in (pod.spec.init_containers or []) + pod.spec.containers:
            status = statuses.get(container.name)
            runs = [False] + ([True] if status is not None and status.restart_count else [])
            for previous in runs:
                text = _log(core, namespace, name, container.name, previous)
                if text is not None:
                    ledger.counts["previous logs" if previous else "logs"] += 1
                    texts[f"{namespace}/pod/{name}/{container.name}" + (" (previous)" if previous else "")] = text
    serialize = cluster.api.sanitize_for_serialization
    for event in core.list_namespaced_event(namespace).items:
        ledger.counts["events"] += 1
        texts[f"{namespace}/event/{event.metadata.name}"] = json.dumps(serialize(event))
    queues: list[dict[str, Any]] = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                                 PLURAL)["items"]
    for queue in queues:
        name = queue["metadata"]["name"]
        ledger.counts["statuses"] += 1
        ledger.queues.add(f"{namespace}/{name}")
        texts[f"{namespace}/bookgenqueue/{name}/status"] = json.dumps(
            {"status": queue.get("status"), "annotations": queue["metadata"].get("annotations")})
    return texts


def _ledger(cluster: Cluster, ledger: SecretScan | None) -> SecretScan | None:
    return ledger if ledger is not None else cluster.secret_scan


def scan_namespace(cluster: Cluster, namespace: str, ledger: SecretScan | None = None) -> list[Finding]:
    """Scan a namespace before it (or its pods) go away: into `ledger`, by default the session's (none
    outside the test session, e.g. in bench/, which then scans nothing). Never raises: a teardown must
    go on to delete; a failure is kept in the ledger, and fails the verdict."""
    return _scan(cluster, ledger, namespace, lambda found: namespace_texts(cluster, namespace, found))


def scan_texts(cluster: Cluster, texts: Mapping[str, str], kind: str,
               ledger: SecretScan | None = None) -> list[Finding]:
    """Scan texts already read (an operator's log kept from a stopped pod, a process's log file)."""

    def collect(found: SecretScan) -> Mapping[str, str]:
        found.counts[kind] += len(texts)
        return texts

    return _scan(cluster, ledger, None, collect)


def _scan(cluster: Cluster, ledger: SecretScan | None, namespace: str | None,
          collect: Callable[[SecretScan], Mapping[str, str]]) -> list[Finding]:
    found = _ledger(cluster, ledger)
    if found is None:
        return []
    started = time.monotonic()
    try:
        # Every Secret of the cluster, not just this namespace's: a value may leak anywhere.
        found.learn(cluster.core.list_secret_for_all_namespaces().items)
        findings = found.judge(collect(found))
        if namespace is not None:
            found.namespaces.add(namespace)
        return findings
    except Exception as e:  # kept and judged, see the docstring
        found.errors.append(mask(f"{namespace or 'texts'}: {type(e).__name__}: {e}"[:500], found.known.values()))
        return []
    finally:
        found.seconds += time.monotonic() - started
