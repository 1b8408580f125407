"""The operator keeps no state in modules and reads its environment in one place.

Every module-level name the operator's modules assign must hold a constant (numbers, strings, frozen
data, read-only mappings, classes, functions, loggers, compiled patterns, prometheus_client metrics,
which that library registers process-wide by design). State lives in the OperatorContext (controller)
or in the objects `bookgen up` builds (local). And only the configuration modules read os.environ: the
operator's (controller/config.py) and the command line's entry (cli/__init__.py, which hands it on).
"""

from __future__ import annotations

import ast
import dataclasses
import decimal
import enum
import importlib
import inspect
import logging
import pkgutil
import re
import types
import typing
from pathlib import Path, PurePath

import bookgen_operator
from prometheus_client.metrics import MetricWrapperBase

PACKAGE = Path(bookgen_operator.__file__).parent
#: Module-level containers that are mutable by type but constant by use, and why.
ALLOWED = {
    ("bookgen_operator.core.spec.defaults", "DEFAULT_POOLS"):
        "the CRD's default spec.pools in JSON form: parse_queue reads it, tests deep-copy it",
}
#: The modules that may read the process environment.
CONFIGURATION = {"controller/config.py", "cli/__init__.py"}

IMMUTABLE_TYPES = (type(None), bool, int, float, complex, str, bytes, decimal.Decimal, PurePath, re.Pattern,
                   type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, logging.Logger,
                   MetricWrapperBase, enum.Enum, typing.TypeVar, types.GenericAlias, types.UnionType)


def constant(value: object) -> bool:
    if isinstance(value, IMMUTABLE_TYPES) or type(value).__module__ == "typing":
        return True
    if isinstance(value, tuple | frozenset):
        return all(constant(item) for item in value)
    if isinstance(value, types.MappingProxyType):
        return all(constant(k) and constant(v) for k, v in value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return bool(value.__dataclass_params__.frozen) and all(  # type: ignore[attr-defined]
            constant(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def modules() -> list[types.ModuleType]:
    return [importlib.import_module(m.name)
            for m in pkgutil.walk_packages(bookgen_operator.__path__, "bookgen_operator.")]


def assigned_names(tree: ast.Module) -> set[str]:
    """Names assigned at module level, and names any function declares `global`."""
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
        names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    names |= {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}
    return names


def test_every_module_global_of_the_operator_is_a_constant() -> None:
    found = []
    for module in modules():
        tree = ast.parse(inspect.getsource(module))
        for name in sorted(assigned_names(tree)):
            if name.startswith("__") or (module.__name__, name) in ALLOWED:
                continue
            value = getattr(module, name, None)
            if not constant(value):
                found.append(f"{module.__name__}.{name}: {type(value).__name__}")
    assert not found, "module-level state (put it in the OperatorContext or an object): " + ", ".join(found)


def test_a_mutable_global_is_caught() -> None:
    assert not constant({"a": 1}) and not constant([1]) and not constant((1, [2]))
    assert constant(types.MappingProxyType({"a": (1, 2)})) and constant(frozenset({"x"}))


ENVIRONMENT = frozenset({"environ", "getenv", "putenv", "unsetenv"})


def _touches_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in ENVIRONMENT and isinstance(node.value, ast.Name) and node.value.id == "os"
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and bool({a.name for a in node.names} & ENVIRONMENT)
    return False


def environment_reads(source: str) -> list[int]:
    """Lines that touch os.environ, os.getenv or os.putenv (or import them from os)."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source)) if _touches_environment(node))


def test_only_the_configuration_modules_read_the_environment() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in CONFIGURATION:
            continue
        found += [f"{relative}:{line}" for line in environment_reads(path.read_text())]
    assert not found, f"os.environ outside {sorted(CONFIGURATION)}: {found}"
    assert environment_reads("import os\nx = os.environ.get('A')\nfrom os import getenv\n") == [2, 3]
