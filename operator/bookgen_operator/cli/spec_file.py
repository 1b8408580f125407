"""Reading a BookGenQueue from a YAML file: the one spec input that is I/O (the core parses only bodies)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bookgen_operator.core.spec import KIND, QueueSpec, SpecError, parse_queue


def load_queue_file(path: str | Path) -> QueueSpec:
    """Read a BookGenQueue from a YAML file (the first document of kind BookGenQueue)."""
    import yaml  # local: the operator's hot path never needs it

    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise SpecError(f"{path} is not valid YAML{line}") from None
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind", KIND) == KIND:
            return parse_queue(doc)
    raise SpecError(f"{path} holds no {KIND}")
