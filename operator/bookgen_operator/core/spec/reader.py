"""Reading primitives for parse_queue: typed field access with the field's path in every message."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar, overload

from bookgen_operator.core.spec.model import SpecError

QUANTITY_SUFFIXES = ("m", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E")
#: One of a field's allowed strings (a Literal type where the caller's annotation says which).
Choice = TypeVar("Choice", bound=str)


class Reader:
    """Typed access to one object of the body, with its path for messages. The body is not trusted yet:
    values are `object` until a method has checked them."""

    def __init__(self, value: object, path: str, known: Sequence[str]) -> None:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise SpecError(f"{path} must be an object (got {show(value)})")
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise SpecError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        # A null is an unset field, as on the API server (nulls of non-nullable fields are pruned).
        self.value: dict[object, object] = {k: v for k, v in value.items() if v is not None}
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return key in self.value

    def obj(self, key: str, known: Sequence[str]) -> Reader:
        return Reader(self.value.get(key), self.at(key), known)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value.get(key, default)
        if not isinstance(value, bool):
            raise SpecError(f"{self.at(key)} must be true or false (got {show(value)})")
        return value

    def string(self, key: str, default: str, *, max_len: int = 253, min_len: int = 0) -> str:
        value = self.value.get(key, default)
        if not isinstance(value, str):
            raise SpecError(f"{self.at(key)} must be a string (got {show(value)})")
        if not min_len <= len(value) <= max_len:
            raise SpecError(f"{self.at(key)} must have {min_len} to {max_len} characters (got {len(value)})")
        return value

    def choice(self, key: str, default: Choice, choices: Sequence[Choice]) -> Choice:
        value = self.value.get(key, default)
        for choice in choices:
            if value == choice:
                return choice
        raise SpecError(f"{self.at(key)} must be one of {', '.join(choices)} (got {show(value)})")

    @overload
    def integer(self, key: str, default: int, lo: int, hi: int | None = None) -> int: ...

    @overload
    def integer(self, key: str, default: int | None, lo: int, hi: int | None = None) -> int | None: ...

    def integer(self, key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
        if key not in self.value:
            return default
        value = self.value[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self.at(key)} must be a whole number (got {show(value)})")
        if value < lo or (hi is not None and value > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise SpecError(f"{self.at(key)} must be {bound} (got {value})")
        return value

    @overload
    def number(self, key: str, default: float, lo: float, hi: float | None = None, *, above: bool = False) -> float: ...

    @overload
    def number(self, key: str, default: float | None, lo: float, hi: float | None = None, *,
               above: bool = False) -> float | None: ...

    def number(
        self, key: str, default: float | None, lo: float, hi: float | None = None, *, above: bool = False
    ) -> float | None:
        if key not in self.value:
            return default
        value = self.value[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SpecError(f"{self.at(key)} must be a number (got {show(value)})")
        if (value <= lo if above else value < lo) or (hi is not None and value > hi):
            low = f"above {lo:g}" if above else f"at least {lo:g}"
            bound = f"{low} and at most {hi:g}" if hi is not None else low
            raise SpecError(f"{self.at(key)} must be {bound} (got {value:g})")
        return float(value)

    def string_list(self, key: str, default: Sequence[str], *, max_items: int) -> tuple[str, ...]:
        value = self.value.get(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise SpecError(f"{self.at(key)} must be a list of names (got {show(value)})")
        if not 1 <= len(value) <= max_items:
            raise SpecError(f"{self.at(key)} must list 1 to {max_items} items (got {len(value)})")
        return tuple(value)


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_dns_label(name: str) -> bool:
    ok = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return bool(name) and set(name) <= ok and name[0] != "-" and name[-1] != "-"


def url_like(url: str, schemes: tuple[str, ...]) -> bool:
    """The CRD's pattern `^<scheme>://[^\\s]+$`."""
    for scheme in schemes:
        if url.startswith(scheme):
            rest = url[len(scheme) :]
            return bool(rest) and not any(c.isspace() for c in rest)
    return False


def quantity(value: object, path: str) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise SpecError(f"{path} must be a quantity such as 500m, 2 or 1Gi (got {show(value)})")
    number = text
    for suffix in sorted(QUANTITY_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    whole, _, frac = number.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or (number.endswith(".")):
        raise SpecError(f"{path} must be a quantity such as 500m, 2 or 1Gi (got {show(value)})")
    return text


def read_resources(
    reader: Reader, key: str, requests: Mapping[str, str], limits: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    res = reader.obj(key, ("requests", "limits"))
    out: dict[str, dict[str, str]] = {}
    for part, default in (("requests", requests), ("limits", limits)):
        raw = res.value.get(part, default)
        if not isinstance(raw, Mapping):
            raise SpecError(f"{res.at(part)} must be an object like {{cpu: 500m, memory: 1Gi}} (got {show(raw)})")
        out[part] = {str(k): quantity(v, f"{res.at(part)}.{k}") for k, v in raw.items()}
    return out
