"""Every field of the BookGenQueue schema has a description, so `kubectl explain bookgenqueue.spec --recursive`
(and `.status`) explains each one (issue 24, acceptance 4). The walk covers spec and status whole, the two
nodes themselves included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.support.crd_validation import openapi_schema

#: The API server publishes its own descriptions of these (TypeMeta, ObjectMeta), whatever the CRD says.
SERVER_DESCRIBED = ("apiVersion", "kind", "metadata")


def nodes(node: dict[str, Any], path: str, parent_described: bool = True) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(path, node, needs a description) for the node and everything below it. An array's items and a
    map's values need none when the array or map has one: kubectl explain shows them under it."""
    described = "description" in node
    exempt = path.endswith(("[]", "{}")) and parent_described
    yield path, node, not exempt
    for key, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{key}", described)
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]", described)
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}", described)


def test_the_kind_spec_and_status_are_described() -> None:
    root = openapi_schema()
    assert root.get("description")
    assert set(root["properties"]) == {"spec", "status", *SERVER_DESCRIBED}
    assert root["properties"]["spec"].get("description") and root["properties"]["status"].get("description")


def test_every_field_of_spec_and_status_has_a_description() -> None:
    """Folds in issue 23's test (the env, volumes, generator, podTemplate and exports fields)."""
    root = openapi_schema()["properties"]
    walked = [(path, node, needed) for top in ("spec", "status") for path, node, needed in nodes(root[top], top)]
    assert len(walked) > 400  # the whole schema, not a part of it
    missing = [path for path, node, needed in walked if needed and "description" not in node]
    assert missing == []


def test_descriptions_are_text() -> None:
    root = openapi_schema()["properties"]
    for top in ("spec", "status"):
        for path, node, _ in nodes(root[top], top):
            if "description" in node:
                text = node["description"]
                assert isinstance(text, str) and text.strip() == text and len(text) >= 10, path


def test_every_pool_override_names_the_queue_wide_field_it_overrides() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    queue_wide = spec["autoscaling"]["properties"]
    overrides = spec["pools"]["items"]["properties"]["autoscaling"]["properties"]
    assert overrides
    for key, node in overrides.items():
        assert key in queue_wide, key
        assert node["description"].startswith(f"Overrides spec.autoscaling.{key} for this pool"), key
