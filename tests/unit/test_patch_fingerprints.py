"""Our patches of Celery and kombu still match the upstream code they were written against.

Each patch module lists the upstream functions it replaces or wraps with the SHA-256 of their source
(UPSTREAM). Here the source is read again from the installed packages, so an upgrade that changes one
of them fails until someone has read the change and re-checked the patch. The source is cut from the
module's file (the function's `def` with its body, as inspect.getsource gives it for the unpatched
function), not taken from the live class: in a test process the patch may already be in place there.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import textwrap
import warnings

import pytest
from bookgen_worker import patches
from bookgen_worker.patches import kombu_full, kombu_redis, prefork_pool

PATCHES = {"kombu_redis": kombu_redis, "kombu_full": kombu_full, "prefork_pool": prefork_pool}


def upstream_source(target: str) -> str:
    """The source of `module:Qualified.name` in the installed package, as written in its file."""
    module, _, qualname = target.partition(":")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed"
    with open(spec.origin) as file:
        text = file.read()
    node: ast.AST = ast.parse(text)
    for part in qualname.split("."):
        node = next(n for n in ast.iter_child_nodes(node)
                    if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and n.name == part)
    segment = ast.get_source_segment(text, node, padded=True)
    assert segment is not None
    return textwrap.dedent(segment)


def fingerprint(target: str) -> str:
    return hashlib.sha256(upstream_source(target).encode()).hexdigest()


@pytest.mark.parametrize(("patch", "target"), [(name, target) for name, module in PATCHES.items()
                                               for target in module.UPSTREAM])
def test_the_upstream_function_is_the_one_the_patch_was_written_for(patch: str, target: str) -> None:
    expected = PATCHES[patch].UPSTREAM[target]
    assert fingerprint(target) == expected, (
        f"{target} changed upstream (installed: {patches.installed(target.split('.')[0])}); read the change, "
        f"check {patch}.py against it, then update its UPSTREAM and WRITTEN_FOR")


@pytest.mark.parametrize("module", PATCHES.values(), ids=PATCHES.keys())
def test_the_installed_versions_are_those_the_patch_was_written_for(module: object) -> None:
    versions = module.WRITTEN_FOR  # type: ignore[attr-defined]
    assert {name: patches.installed(name) for name in versions} == versions


def test_the_fingerprint_follows_the_source() -> None:
    source = upstream_source("kombu.transport.redis:Channel._brpop_read")
    assert source.startswith("def _brpop_read(self, **options):")
    assert fingerprint("kombu.transport.redis:Channel._brpop_read") == hashlib.sha256(source.encode()).hexdigest()


def test_other_versions_leave_upstream_alone_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patches, "installed", lambda name: "9.9.9")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not patches.written_for("kombu Redis transport", {"kombu": "5.7.0"}, "a Redis restart kills workers")
    (warning,) = caught
    assert issubclass(warning.category, patches.PatchNotApplied)
    assert "NOT applied" in str(warning.message) and "kombu 5.7.0" in str(warning.message)
    assert "kombu 9.9.9" in str(warning.message) and "a Redis restart kills workers" in str(warning.message)
    assert patches.written_for("kombu Redis transport", {"kombu": "9.9.9"}, "unused")
