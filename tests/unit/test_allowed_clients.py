"""`spec.redis.allowedClients` (issue 23): the user's own pods admitted to the managed Redis by its
NetworkPolicy, as NetworkPolicyPeers, beside the queue's pods and the operator; nobody more when the
field is missing or empty. The built policy is checked against Kubernetes' own schema."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from bookgen_operator.core.resources import desired_objects
from bookgen_operator.core.spec import SpecError, parse_queue

from tests.support.crd_validation import validate_object

APP = {"matchLabels": {"app": "biographer"}}
WRITERS = {"matchLabels": {"kubernetes.io/metadata.name": "writers"}}


def queue(redis: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": "bq", "namespace": "books"}, "spec": {"redis": redis}}


def policy_peers(redis: dict[str, Any]) -> list[dict[str, Any]]:
    objects = desired_objects(parse_queue(queue(redis)), "bookgen-system")
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    assert kubernetes_validate.validate(policy, "1.31.0", strict=True)
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    return list(rule["from"])


@pytest.mark.parametrize("redis", [{}, {"allowedClients": []}, {"allowedClients": None}])
def test_without_the_field_only_the_queue_and_the_operator_are_admitted(redis: dict[str, Any]) -> None:
    peers = policy_peers(redis)
    assert len(peers) == 2
    assert peers[0] == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "bookgen",
                                                        "app.kubernetes.io/instance": "bq"}}}
    assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_each_allowed_client_becomes_a_peer_after_ours_in_the_users_order() -> None:
    clients = [
        {"podSelector": APP},  # pods of the queue's own namespace
        {"namespaceSelector": WRITERS},  # every pod of the namespace writers
        {"podSelector": APP, "namespaceSelector": WRITERS},  # the app's pods in writers only
        {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                              {"key": "batch", "operator": "DoesNotExist"}]}},
    ]
    peers = policy_peers({"allowedClients": clients})
    assert peers[2:] == clients
    assert validate_object(queue({"allowedClients": clients})) == []


def test_empty_parts_are_left_out_as_the_api_server_stores_them() -> None:
    """matchLabels, matchExpressions and values are omitempty: a `{}` or `[]` written by the user is
    not in the stored policy, so the built one leaves it out too (a settled queue writes nothing)."""
    clients = [{"podSelector": {"matchLabels": {}, "matchExpressions": []}},
               {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists", "values": []}]}}]
    assert policy_peers({"allowedClients": clients})[2:] == [
        {"podSelector": {}},  # an empty selector selects every pod of the namespace, as in Kubernetes
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}},
    ]


def test_the_built_peers_are_copies_not_the_specs_own_objects() -> None:
    spec = parse_queue(queue({"allowedClients": [{"podSelector": APP}]}))
    policy = next(o for o in desired_objects(spec) if o["kind"] == "NetworkPolicy")
    policy["spec"]["ingress"][0]["from"][2]["podSelector"]["matchLabels"]["app"] = "changed"
    assert spec.redis.allowed_clients[0]["podSelector"]["matchLabels"]["app"] == "biographer"


@pytest.mark.parametrize(("clients", "message"), [
    ("writers", "spec.redis.allowedClients must be a list"),
    ([{"podSelector": APP}] * 17, "spec.redis.allowedClients must have at most 16 entries"),
    ([{"ipBlock": {"cidr": "10.0.0.0/8"}}], "spec.redis.allowedClients[0]: unknown field(s) ipBlock"),
    ([{"podSelector": {"matchLabels": {"Not A Label": "x"}}}],
     "spec.redis.allowedClients[0].podSelector.matchLabels: 'Not A Label' is not a valid label name"),
    ([{"podSelector": {"matchExpressions": [{"key": "-bad", "operator": "Exists"}]}}],
     "spec.redis.allowedClients[0].podSelector.matchExpressions[0].key: '-bad' is not a valid label name"),
    ([{"podSelector": {"matchExpressions": [{"operator": "Exists"}]}}],
     "spec.redis.allowedClients[0].podSelector.matchExpressions[0]: key is required"),
    ([{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["no spaces"]}]}}],
     "namespaceSelector.matchExpressions[0].values: 'no spaces' is not a valid label value"),
    ([{"podSelector": {"matchLabels": ["app"]}}],
     "spec.redis.allowedClients[0].podSelector.matchLabels must be a map of label names to values"),
])
def test_bad_clients_are_refused_in_one_line_naming_the_field(clients: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_queue(queue({"allowedClients": clients}))
    assert message in str(err.value) and "\n" not in str(err.value)
