"""Fixtures for tests against the Kubernetes API emulator (tests/support/k8s_emulator.py).

`emulator` (async, function scope) yields a running `K8sEmulator` that knows the built-in
resources and the BookGenQueue CRD (`bookgen.io/v1alpha1/bookgenqueues`, with `status`):

- `emulator.base_url`: the API server URL (plain HTTP, no auth) for kopf's login handler or any client;
- `emulator.objects_of("apps/v1/deployments", namespace=None, labels="k=v")`: stored objects (copies);
- `emulator.get_object("v1/pods", "ns", "name")`: one object or None;
- `await emulator.create_object(resource, body)`, `await emulator.patch_object(resource, ns, name,
  patch, subresource="status")`, `await emulator.delete_object(resource, ns, name)`: act as a user or
  a controller would (watch events fire, no API call is logged);
- `emulator.calls`: every API call (`ApiCall(verb, group, resource, subresource, namespace, name, body)`);
  `emulator.writes(since=index)`: the write calls after an index into `calls`;
- `emulator.write_hooks.append(fn(call, body))`: inspect every write; exceptions land in `emulator.hook_errors`.

Every API call seen in this package is also collected for operator/api-calls.json (see test_api_calls.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.k8s_emulator import K8sEmulator, default_emulator, start_emulator, stop_emulator

BGQ = "bookgen.io/v1alpha1/bookgenqueues"

#: Calls observed by every emulator of this session (collected for operator/api-calls.json).
OBSERVED_CALLS: set[tuple[str, str, str, str]] = set()


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[K8sEmulator]:
    emu = default_emulator()
    emu.declare(BGQ, kind="BookGenQueue", namespaced=True, subresources=["status"], shortnames=["bgq"])
    emu, server = await start_emulator(emu)
    try:
        yield emu
    finally:
        for call in emu.calls:
            OBSERVED_CALLS.add((call.verb, call.group, call.resource, call.subresource or ""))
        await stop_emulator(emu, server)
