"""spec.flower.purgeOfflineWorkersSeconds and urlPrefix: parsed with user-worded errors, and passed to
Flower's command line (the wrapper and the purge are proved on a real Flower in tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest
from bookgen_operator.core.resources.flower import flower_command
from bookgen_operator.core.spec import SpecError, parse_queue


def flower(**fields: Any) -> Any:
    return parse_queue({"metadata": {"name": "q", "namespace": "ns", "uid": "u", "generation": 1},
                        "spec": {"flower": fields}})


def test_by_default_offline_workers_are_forgotten_after_five_minutes_at_the_root() -> None:
    spec = flower()
    assert (spec.flower.purge_offline_workers_seconds, spec.flower.url_prefix) == (300, "")
    command = flower_command(spec)
    assert command[command.index("--purge-offline-workers") + 1] == "300"
    assert "--url-prefix" not in command


def test_a_prefix_and_a_period_reach_the_command_and_zero_never_purges() -> None:
    command = flower_command(flower(purgeOfflineWorkersSeconds=0, urlPrefix="bookgen/flower"))
    assert "--purge-offline-workers" not in command
    assert command[command.index("--url-prefix") + 1] == "bookgen/flower"


@pytest.mark.parametrize(("fields", "message"), [
    ({"urlPrefix": "/flower"}, "spec.flower.urlPrefix must be a path without slashes around it, such as flower "
                               "or bookgen/flower (got '/flower')"),
    ({"urlPrefix": "a//b"}, "(got 'a//b')"),
    ({"purgeOfflineWorkersSeconds": -1}, "spec.flower.purgeOfflineWorkersSeconds"),
    ({"purgeOfflineWorkersSeconds": 604801}, "spec.flower.purgeOfflineWorkersSeconds"),
])
def test_bad_values_are_refused_in_words(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as refused:
        flower(**fields)
    assert message in str(refused.value)
