"""Chart options a platform team expects (issue 24's chart gaps): labels and annotations on every
object, the operator's own environment and arguments, a configurable PodDisruptionBudget and topology
spread, and `helm test` honouring the pull Secrets."""

from __future__ import annotations

from typing import Any

from .conftest import Render, by_kind

EVERYTHING = ["prometheusRule.enabled=true", "metrics.serviceMonitor.enabled=true", "podMonitor.enabled=true",
              "defaultQueue.create=true", "defaultQueue.namespace=a", "crds.install=true", "watchNamespaces={a,b}"]


def operator_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    return dict(deployment["spec"]["template"]["spec"])


def test_common_labels_and_annotations_reach_every_object_and_own_annotations_win(render: Render) -> None:
    objects = render(sets=[*EVERYTHING, "commonLabels.team=books", "commonAnnotations.owner=platform",
                           "serviceAccount.annotations.owner=identity"])
    # Helm installs the crds/ folder as it is, never templated: with crds.install the chart's own copy
    # is a template, and carries them (the chart README says so).
    objects = [o for o in objects if "helm.sh/chart" in (o["metadata"].get("labels") or {})]
    assert len(objects) >= 15 and "CustomResourceDefinition" in {o["kind"] for o in objects}
    for obj in objects:
        meta = obj["metadata"]
        assert meta["labels"]["team"] == "books", (obj["kind"], meta["name"])
        expected = "identity" if obj["kind"] == "ServiceAccount" else "platform"
        assert meta["annotations"]["owner"] == expected, (obj["kind"], meta["name"])
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "books"
    assert deployment["spec"]["selector"]["matchLabels"].get("team") is None, "selectors never change"


def test_without_common_labels_objects_carry_no_empty_annotations(render: Render) -> None:
    for obj in render(sets=EVERYTHING):
        if obj["kind"] not in ("Pod", "CustomResourceDefinition", "ConfigMap"):
            assert "annotations" not in obj["metadata"], (obj["kind"], obj["metadata"])


def test_extra_env_and_args_reach_the_operator(render: Render) -> None:
    objects = render(set_json=['extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]',
                               'extraArgs=["--verbose"]'])
    (container,) = operator_pod(objects)["containers"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert container["args"][-1] == "--verbose"


def test_the_disruption_budget_is_configurable(render: Render) -> None:
    (pdb,) = by_kind(render(sets=["podDisruptionBudget.minAvailable=1"]), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert by_kind(render(sets=["podDisruptionBudget.enabled=false"]), "PodDisruptionBudget") == []


def test_topology_spread_defaults_to_nodes_can_be_replaced_or_turned_off(render: Render) -> None:
    (default,) = operator_pod(render())["topologySpreadConstraints"]
    assert default["topologyKey"] == "kubernetes.io/hostname"
    zone = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}
    replaced = operator_pod(render(set_json=[f"topologySpreadConstraints=[{__import__('json').dumps(zone)}]"]))
    assert replaced["topologySpreadConstraints"] == [zone]
    assert "topologySpreadConstraints" not in operator_pod(render(set_json=["topologySpreadConstraints=[]"]))


def test_helm_test_pulls_with_the_global_and_the_charts_pull_secrets(render: Render) -> None:
    objects = render(set_json=['global.imagePullSecrets=[{"name":"corp"}]', 'imagePullSecrets=[{"name":"team"}]'])
    (test_pod,) = by_kind(objects, "Pod")
    assert test_pod["spec"]["imagePullSecrets"] == [{"name": "corp"}, {"name": "team"}]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_the_operator_gets_its_own_image_for_the_queues_that_do_not_pin_one(render: Render) -> None:
    """Without global.imageRegistry in it: the operator applies the registry to every child itself."""
    from tests.chart.test_chart_alerts import operator_env

    env = operator_env(render(sets=["image.repository=registry.example/team/bookgen", "image.tag=1.3.0",
                                    "global.imageRegistry=mirror.local"]))
    assert env["BOOKGEN_DEFAULT_IMAGE"] == "registry.example/team/bookgen:1.3.0"
    assert env["BOOKGEN_IMAGE_REGISTRY"] == "mirror.local"
    assert "BOOKGEN_REDIS_IMAGE_REGISTRY" not in env  # Redis moves only when asked
    env = operator_env(render(sets=["redis.imageRegistry=hub-mirror.local"]))
    assert env["BOOKGEN_REDIS_IMAGE_REGISTRY"] == "hub-mirror.local"
    digest = "sha256:" + "ef" * 32
    env = operator_env(render(sets=[f"image.digest={digest}"]))
    assert env["BOOKGEN_DEFAULT_IMAGE"] == f"ghcr.io/bookgen/bookgen-queue:0.1.0@{digest}"  # appVersion
