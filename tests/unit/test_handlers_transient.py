"""A refusal the API server gives for a passing reason is a one-line retry, not a traceback."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from bookgen_operator.controller import handlers
from bookgen_operator.controller.client import KubeError

RESTMAPPING = ('POST /api/v1/namespaces/books/secrets: secrets "bookgen-redis" is forbidden: cannot set '
               "blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion bookgen.io/v1alpha1 "
               'Kind BookGenQueue: no matches for kind "BookGenQueue" in version "bookgen.io/v1alpha1"')


async def test_an_unknown_kind_right_after_the_crd_is_installed_is_retried_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(*_: Any) -> None:
        raise KubeError(403, "Forbidden", RESTMAPPING)

    monkeypatch.setattr(handlers, "reconcile", refused)
    with pytest.raises(kopf.TemporaryError) as err:
        await handlers.queue_changed(body={}, reason="create", memo=None)  # type: ignore[arg-type]
    assert err.value.delay == handlers.NOT_YET_KNOWN_RETRY
    assert "CRD just installed" in str(err.value) and "\n" not in str(err.value)


async def test_an_rbac_refusal_stays_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*_: Any) -> None:
        raise KubeError(403, "Forbidden", 'deployments.apps is forbidden: User "x" cannot create resource')

    monkeypatch.setattr(handlers, "reconcile", refused)
    with pytest.raises(KubeError):
        await handlers.queue_changed(body={}, reason="create", memo=None)  # type: ignore[arg-type]
