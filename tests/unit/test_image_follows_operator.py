"""A queue that does not pin spec.image runs the operator's own image (BOOKGEN_DEFAULT_IMAGE, set by
the chart), so `helm upgrade` to a new operator image rolls it; a queue that pins one keeps it."""

from __future__ import annotations

from typing import Any

import pytest
from bookgen_operator.core.resources import desired_objects, pod_specs
from bookgen_operator.core.spec import SpecError, parse_queue
from bookgen_operator.core.spec.operator_defaults import OperatorDefaults

DIGEST = "sha256:" + "cd" * 32


def images(image: dict[str, Any] | None, operator_image: str) -> set[str]:
    spec = parse_queue({"metadata": {"name": "q", "namespace": "ns", "uid": "u"},
                        "spec": {} if image is None else {"image": image}})
    spec = OperatorDefaults.from_env({"BOOKGEN_DEFAULT_IMAGE": operator_image}).apply(spec)
    return {c["image"] for _, pod in pod_specs(desired_objects(spec)) for c in pod["containers"]
            if "redis" not in c["image"]}


def test_an_unpinned_queue_runs_the_operators_image_and_follows_its_upgrade() -> None:
    assert images(None, "registry.example/team/bookgen:1.2.0") == {"registry.example/team/bookgen:1.2.0"}
    assert images(None, "registry.example/team/bookgen:1.3.0") == {"registry.example/team/bookgen:1.3.0"}
    assert images({"pullPolicy": "Always"}, f"r.example/b:2@{DIGEST}") == {f"r.example/b:2@{DIGEST}"}


@pytest.mark.parametrize(("image", "expected"), [
    ({"tag": "0.0.9"}, "ghcr.io/bookgen/bookgen-queue:0.0.9"),
    ({"repository": "mine/bookgen", "tag": "x"}, "mine/bookgen:x"),
    ({"digest": DIGEST}, f"ghcr.io/bookgen/bookgen-queue:0.1.0@{DIGEST}"),
])
def test_a_pinned_queue_keeps_its_image_whatever_the_operator_runs(image: dict[str, str], expected: str) -> None:
    assert images(image, "registry.example/team/bookgen:1.3.0") == {expected}


def test_without_the_setting_the_built_in_default_stays() -> None:
    assert images(None, "") == {"ghcr.io/bookgen/bookgen-queue:0.1.0"}


@pytest.mark.parametrize("bad", ["bookgen", "bookgen:", "host:5000/bookgen", "a:b@sha256:12"])
def test_a_malformed_operator_image_is_named_in_the_error(bad: str) -> None:
    with pytest.raises(SpecError, match="BOOKGEN_DEFAULT_IMAGE must be repository:tag"):
        OperatorDefaults.from_env({"BOOKGEN_DEFAULT_IMAGE": bad})

