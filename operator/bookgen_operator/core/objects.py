"""Kubernetes objects as the core handles them: plain JSON data.

What the API server answers (httpx's `.json()`), what `yaml.safe_load` reads and what our builders make
is JSON, whose values are only known at run time: these two aliases are the one place the core says
`Any`, because the libraries that produce the data do. Input that still has to be validated (a
BookGenQueue body before parse_queue has checked it) is typed `object` instead, so that every use
narrows it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

#: A Kubernetes object, or a part of one, that we build or change.
JSON: TypeAlias = dict[str, Any]
#: A Kubernetes object only read (a kopf body, a child from the API server or the watch cache).
Body: TypeAlias = Mapping[str, Any]
