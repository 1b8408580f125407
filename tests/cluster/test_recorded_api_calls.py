"""operator/api-calls.json holds every call the real operator made on the real API server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cluster import api_calls


def test_every_call_the_operator_made_on_the_real_server_is_recorded(request: pytest.FixtureRequest) -> None:
    ran = {Path(str(item.fspath)).name for item in request.session.items}
    if not ran >= api_calls.CONTRIBUTORS or not api_calls.OBSERVED:
        pytest.skip(f"needs the operator runs of {', '.join(sorted(api_calls.CONTRIBUTORS))} in this session")
    if os.environ.get("BOOKGEN_UPDATE_API_CALLS") == "1":
        api_calls.write(api_calls.recorded() | api_calls.OBSERVED)
    missing = sorted(api_calls.OBSERVED - api_calls.recorded())
    assert missing == [], (
        f"the operator made calls that operator/api-calls.json (and so the RBAC check) does not list: {missing}; "
        "add them with BOOKGEN_UPDATE_API_CALLS=1 ./scripts/test tests/cluster and review the diff"
    )
