"""Reading the test control plane's audit log: who wrote what, in a window.

The policy (tests/cluster/audit-policy.yaml) logs every write at ResponseComplete and every watch
when it starts, without bodies. An event is written when the request handler finishes, possibly just
after the client saw its response, so `settled_writes` waits for the log to stop growing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class AuditEvent:
    verb: str
    user: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    uri: str
    time: str
    stage: str
    group: str
    user_agent: str = ""

    @classmethod
    def from_json(cls, e: dict[str, Any]) -> AuditEvent:
        ref = e.get("objectRef", {})
        return cls(
            verb=e.get("verb", ""),
            user=e.get("user", {}).get("username", ""),
            resource=ref.get("resource", ""),
            subresource=ref.get("subresource", ""),
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            code=e.get("responseStatus", {}).get("code", 0),
            uri=e.get("requestURI", ""),
            time=e.get("stageTimestamp") or e.get("requestReceivedTimestamp", ""),
            stage=e.get("stage", ""),
            group=ref.get("apiGroup", ""),
            user_agent=e.get("userAgent", ""),
        )

    @property
    def ok(self) -> bool:
        return 0 < self.code < 400


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """An offset: events after it are the ones that happened from now on."""
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, since: int = 0) -> list[AuditEvent]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(since)
            data = f.read()
        # A line being written right now may be incomplete: only whole lines count.
        lines = data.split(b"\n")[:-1]
        return [AuditEvent.from_json(json.loads(line)) for line in lines if line.strip()]

    def writes(self, user: str, since: int = 0, *, successful: bool = True) -> list[AuditEvent]:
        return [e for e in self.events(since) if e.stage == "ResponseComplete"
                and e.verb in WRITE_VERBS and e.user == user and (e.ok or not successful)]

    def watches(self, user: str, since: int = 0) -> list[AuditEvent]:
        """Watch requests as they started (logged for ServiceAccounts only)."""
        return [e for e in self.events(since) if e.verb == "watch" and e.user == user and e.stage == "ResponseStarted"]

    def calls(self, user: str, since: int = 0) -> set[tuple[str, str, str, str]]:
        """(verb, group, resource, subresource) of every request the user made that RBAC let through
        (a 404 on a GET is still a call the operator needs permission for)."""
        return {(e.verb, e.group, e.resource, e.subresource) for e in self.events(since)
                if e.user == user and e.resource and e.code not in (401, 403)}

    def deleted_namespaces(self, since: int = 0) -> set[str]:
        """Namespaces deleted (successfully) since `since` by a user who is not a controller: the tests.
        Only lines naming namespaces are parsed: the log of a whole suite run is large."""
        if not self.path.exists():
            return set()
        with self.path.open("rb") as f:
            f.seek(since)
            lines = [line for line in f.read().split(b"\n")[:-1] if b'"namespaces"' in line and b'"delete"' in line]
        events = (AuditEvent.from_json(json.loads(line)) for line in lines)
        return {e.name for e in events if e.verb == "delete" and e.resource == "namespaces" and not e.subresource
                and e.stage == "ResponseComplete" and e.ok and not e.user.startswith("system:")}

    def settled_writes(self, user: str, since: int = 0, quiet: float = 0.5, timeout: float = 10.0) -> list[AuditEvent]:
        """The writes once the log has not grown for `quiet` seconds (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        size, still_since = self.mark(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now_size = self.mark()
            if now_size != size:
                size, still_since = now_size, time.monotonic()
            elif time.monotonic() - still_since >= quiet:
                break
        return self.writes(user, since)


def summary(events: list[AuditEvent]) -> Counter[tuple[str, str, str]]:
    return Counter((e.verb, e.resource, e.subresource) for e in events)
