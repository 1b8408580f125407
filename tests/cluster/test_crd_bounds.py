"""Every numeric bound of the BookGenQueue schema on the real API server (issue 24, acceptance 4): a value
just outside each bound is refused, naming the field, and the value at the bound is accepted. A
server-side dry run stores nothing, so one namespace serves every case and each body is one request.

The cases come from tests/support/crd_bounds.py (one per bound, counted against the CRD by
tests/unit/test_crd_bounds.py). They include the whole number just outside a fractional bound, which the
schema alone lets through (the server compares it with the bound truncated to an integer): the CEL rule
on such a field must refuse it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.conftest import RESTRICTED, Cluster, kubectl, wait_established
from tests.support.crd_bounds import BoundCase, cases, show

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "bookgen.io", "v1alpha1", "bookgenqueues"
CASES = cases()


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(cluster, "bookgenqueues.bookgen.io")


@pytest.fixture(scope="module")
def dry_run_namespace(cluster: Cluster, crd: None) -> Iterator[str]:
    """A namespace for the dry runs (a create is admitted only into one that exists); nothing lands in it."""
    name = f"bounds-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED)))
    try:
        yield name
    finally:
        try:
            cluster.delete_namespace(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def submit(cluster: Cluster, namespace: str, body: dict[str, Any]) -> str | None:
    """None when the API server would create the object, else its answer (status and message)."""
    try:
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")
    except client.ApiException as exc:
        try:
            message = str(json.loads(exc.body or "")["message"])
        except (TypeError, ValueError, KeyError):
            message = str(exc.body)
        return f"HTTP {exc.status}: {message}"
    return None


def names_the_field(answer: str, case: BoundCase) -> bool:
    """A 422 whose causes include this field (not only a rule on an enclosing object)."""
    return answer.startswith("HTTP 422:") and f"{case.field}: " in answer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_api_server_refuses_just_outside_every_bound_and_admits_at_it(
    cluster: Cluster, dry_run_namespace: str, case: BoundCase
) -> None:
    failures: list[str] = []
    for value in case.outside:
        answer = submit(cluster, dry_run_namespace, case.body(value))
        if answer is None:
            failures.append(f"{case.field}={show(value)} was accepted")
        elif not names_the_field(answer, case):
            failures.append(f"{case.field}={show(value)} was refused for another reason: {answer}")
    answer = submit(cluster, dry_run_namespace, case.body(case.at_bound))
    at = f"{case.field}={show(case.at_bound)}"
    if case.refused_at_bound_by:
        # No valid object reaches this bound: a cross-field rule refuses it, but the bound itself does not.
        if answer is None or names_the_field(answer, case) or case.refused_at_bound_by not in answer:
            failures.append(f"{at} should be refused by {case.refused_at_bound_by!r} alone: {answer or 'accepted'}")
    elif answer is not None:
        failures.append(f"{at} (at the bound) was refused: {answer}")
    assert failures == []
