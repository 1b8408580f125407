"""What the status reporter needs of a QueueSpec: its name, namespace and uid."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueStub:
    name: str = "novels"
    namespace: str = "books"
    uid: str = "uid-1"
