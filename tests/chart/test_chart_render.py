"""Acceptance 1: the real helm lints and renders the chart for the defaults and three variants; every
object validates against the Kubernetes schemas (and the CRD's own schema for BookGenQueues), every
pod passes the restricted Pod Security Standard, and values.schema.json rejects wrong types."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.alert_rules import operator_groups, queue_groups
from tests.support.crd_validation import validate_object
from tests.support.pod_security import restricted_violations

from .conftest import CHART, HERE, ROOT, VARIANTS, HelmError, Render, by_kind, run_helm

#: kubeVersion says >=1.27: check the oldest supported schema and the newest one we know.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
MONITORING_SUBSET = ROOT / "tests" / "crd" / "prometheus-operator-subset.yaml"
POD_MONITOR_SCHEMA = HERE / "podmonitor-schema.yaml"
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def monitoring_schemas() -> dict[str, Any]:
    """kubernetes-validate has no monitoring.coreos.com schemas: use the project's hand-written subset
    (ServiceMonitor, PrometheusRule) plus ours for PodMonitor."""
    schemas = yaml.safe_load(MONITORING_SUBSET.read_text())
    schemas.update(yaml.safe_load(POD_MONITOR_SCHEMA.read_text()))
    return schemas


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "Pod":
            out.append((name, o["spec"]))
        elif o["kind"] in POD_TEMPLATE_KINDS:
            out.append((name, o["spec"]["template"]["spec"]))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict_passes(helm: str, variant: str) -> None:
    values = VARIANTS[variant]
    args = ["lint", "--strict", str(CHART), "--namespace", "bookgen-system"]
    if values is not None:
        args += ["--values", str(values)]
    out = run_helm(helm, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_validates(render: Render, variant: str) -> None:
    objects = render([VARIANTS[variant]])
    assert objects, "helm template rendered nothing"
    schemas = monitoring_schemas()
    checked: set[str] = set()
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            jsonschema.validate(obj, schemas[obj["kind"]])
        elif obj["apiVersion"].startswith("bookgen.io/"):
            assert validate_object(obj) == [], what
        else:
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
        checked.add(obj["kind"])
    assert {"Deployment", "Service", "CustomResourceDefinition", "Pod"} <= checked


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_passes_the_restricted_profile(render: Render, variant: str) -> None:
    pods = pod_specs(render([VARIANTS[variant]]))
    assert {name.split("/")[0] for name, _ in pods} == {"Deployment", "Pod"}  # operator + helm test pod
    for name, spec in pods:
        assert restricted_violations(spec) == [], name


def test_the_restricted_check_would_catch_a_weakened_security_context(render: Render) -> None:
    objects = render(set_json=['securityContext={"allowPrivilegeEscalation":true}'])
    (name, spec), *_ = pod_specs(objects)
    assert any("allowPrivilegeEscalation" in v for v in restricted_violations(spec)), name


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("logLevel=7", "logLevel: Invalid type. Expected: string, given: integer"),
        ('serviceAccount.create="yes"', "serviceAccount.create: Invalid type. Expected: boolean, given: string"),
        ('watchNamespaces="team-a"', "watchNamespaces: Invalid type. Expected: array, given: string"),
        ('metrics.port="http"', "metrics.port: Invalid type. Expected: integer, given: string"),
        ('imageTypo={"tag":"x"}', "Additional property imageTypo is not allowed"),
    ],
)
def test_values_schema_rejects_wrong_types_with_a_clear_message(helm: str, flag: str, expected: str) -> None:
    for command in (["template", "bookgen", str(CHART)], ["lint", "--strict", str(CHART)]):
        with pytest.raises(HelmError) as failure:
            run_helm(helm, *command, "--set-json", flag)
        assert expected in str(failure.value)


def test_watch_namespaces_must_be_exact_names(helm: str) -> None:
    with pytest.raises(HelmError, match=r"watchNamespaces\.0: Does not match pattern"):
        run_helm(helm, "template", "bookgen", str(CHART), "--set-json", 'watchNamespaces=["team-*"]')


# ---------------------------------------------------------------- what the objects say


def operator_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    return deployment


def test_operator_deployment_is_leader_elected_replicas_with_a_pdb_and_a_liveness_probe(render: Render) -> None:
    objects = render()
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 2
    # a rolling update: a stuck terminating old pod never holds the rollout (it would with Recreate)
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "--leader-elect" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert by_kind(render(sets=["replicaCount=1"]), "PodDisruptionBudget") == []
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "bookgen_operator"]
    assert container["image"] == "ghcr.io/bookgen/bookgen-queue:0.1.0"  # appVersion when image.tag is empty
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["port"] == "health"
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in container["args"]
    assert not any(a.startswith("--namespace") for a in container["args"])  # cluster-wide
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_each_redis_network_policy_admits_the_charts_operator_pod(render: Render) -> None:
    from bookgen_operator.core.resources.network import OPERATOR_POD_LABELS

    deployment = operator_deployment(render([], sets=["nameOverride=other-name"]))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert OPERATOR_POD_LABELS.items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in container["env"]


def test_namespaced_mode_passes_each_namespace_to_the_operator(render: Render) -> None:
    objects = render([VARIANTS["namespaced"]])
    (container,) = operator_deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert [a for a in container["args"] if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--verbose" in container["args"]
    # a Role per watched namespace, plus the leader election Role in the release namespace
    watched = {"team-a", "team-b", "bookgen-system"}
    assert {r["metadata"]["namespace"] for r in by_kind(objects, "Role")} == watched
    assert {r["metadata"]["namespace"] for r in by_kind(objects, "RoleBinding")} == watched
    (account,) = by_kind(objects, "ServiceAccount")
    assert account["metadata"]["name"] == "bookgen-operator-sa"
    for binding in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "bookgen-operator-sa", "namespace": "bookgen-system"}
        ]


@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_the_operator_understands_the_rendered_arguments(render: Render, variant: str) -> None:
    from bookgen_operator.controller.config import load_config

    objects = render([VARIANTS[variant]])
    (container,) = operator_deployment(objects)["spec"]["template"]["spec"]["containers"]
    config = load_config(container["args"], {})
    expected = {"default": (), "namespaced": ("team-a", "team-b")}[variant]
    assert config.namespaces == expected  # empty = cluster-wide (kopf clusterwide=True)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    assert config.metrics_port == ports["metrics"]


def test_the_image_tag_and_pull_secrets_are_the_users(render: Render) -> None:
    objects = render([VARIANTS["monitoring"]], sets=["image.tag=1.2.3", "image.repository=registry.example/bg"])
    pod = operator_deployment(objects)["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/bg:1.2.3"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"


def test_monitoring_objects_carry_the_additional_labels(render: Render) -> None:
    objects = render([VARIANTS["monitoring"]])
    kinds = {o["kind"]: o for o in objects}
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert kinds[kind]["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    assert kinds["PrometheusRule"]["metadata"]["labels"]["role"] == "alert-rules"
    assert kinds["ServiceMonitor"]["spec"]["endpoints"][0]["interval"] == "15s"
    # the ServiceMonitor selects the operator's Service, which exposes the named port it scrapes
    (service,) = by_kind(objects, "Service")
    assert kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_prometheus_rule_alerts_on_the_operator_and_never_duplicates_the_per_queue_alerts(render: Render) -> None:
    (rule,) = by_kind(render([VARIANTS["monitoring"]]), "PrometheusRule")
    queue_alerts = {r["alert"] for g in queue_groups() for r in g["rules"]}
    ours = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rule["spec"]["groups"] == operator_groups()  # untuned: the file with its thresholds' defaults
    assert ours == {"BookGenOperatorDown", "BookGenOperatorReconcileErrors"}
    assert not ours & queue_alerts  # each BookGenQueue's own PrometheusRule carries those, scoped to it
    assert "absent(" not in json.dumps(rule["spec"])  # would fire on a cluster with no queue
    assert "{{ $labels.reason }}" in json.dumps(rule["spec"])  # Prometheus templates survive Helm


def test_one_registry_pull_secrets_and_digest_reach_the_operator_and_every_child(render: Render) -> None:
    digest = "sha256:" + "ab" * 32
    objects = render(sets=["global.imageRegistry=mirror.local:5000", "global.imagePullSecrets[0].name=corp",
                           "imagePullSecrets[0].name=regcred", f"image.digest={digest}",
                           "monitoring.labels.release=kps", "redis.imageRegistry=mirror.local:5000"])
    pod = operator_deployment(objects)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"mirror.local:5000/bookgen/bookgen-queue:0.1.0@{digest}"
    assert pod["imagePullSecrets"] == [{"name": "corp"}, {"name": "regcred"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BOOKGEN_IMAGE_REGISTRY"] == env["BOOKGEN_REDIS_IMAGE_REGISTRY"] == "mirror.local:5000"
    assert env["BOOKGEN_IMAGE_PULL_SECRETS"] == "corp"
    assert env["BOOKGEN_MONITOR_LABELS"] == "release=kps"
    from bookgen_operator.core.resources import desired_objects, monitoring_objects, pod_specs
    from bookgen_operator.core.spec import parse_queue
    from bookgen_operator.core.spec.operator_defaults import OperatorDefaults

    spec = OperatorDefaults.from_env(env).apply(parse_queue({"metadata": {"name": "q", "namespace": "n"}}))
    for name, child in pod_specs(desired_objects(spec)):
        assert child["imagePullSecrets"] == [{"name": "corp"}], name
        assert all(c["image"].startswith("mirror.local:5000/") for c in child["containers"]), name
    assert all(o["metadata"]["labels"]["release"] == "kps" for o in monitoring_objects(spec, True))


def test_a_malformed_digest_or_registry_is_refused(render: Render) -> None:
    for bad in ("image.digest=latest", "global.imageRegistry=not a host"):
        with pytest.raises(HelmError, match=r"(?i)does not match pattern"):
            render(sets=[bad])


def test_grafana_dashboard_config_map(render: Render) -> None:
    objects = render([VARIANTS["monitoring"]])
    (dashboard,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "BookGen"}
    (content,) = dashboard["data"].values()
    canonical = json.loads((ROOT / "worker" / "bookgen_worker" / "metrics" / "assets" / "dashboard.json").read_text())
    assert json.loads(content) == canonical
    # the default values have the dashboard on, in the release namespace
    (default,) = by_kind(render(), "ConfigMap")
    assert default["metadata"]["namespace"] == "bookgen-system"
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_minimal_renders_only_the_operator(render: Render) -> None:
    objects = render([VARIANTS["minimal"]])
    assert sorted(o["kind"] for o in objects) == ["CustomResourceDefinition", "Deployment", "Pod",
                                                  "PodDisruptionBudget", "Service"]
    pod = operator_deployment(objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "preexisting-operator"


def test_default_queue_is_a_valid_bookgenqueue(render: Render) -> None:
    objects = render([VARIANTS["namespaced"]])
    (queue,) = by_kind(objects, "BookGenQueue")
    assert queue["metadata"] == {**queue["metadata"], "name": "books", "namespace": "team-a"}
    assert [p["name"] for p in queue["spec"]["pools"]] == ["content", "rest"]
    assert validate_object(queue) == []
    assert by_kind(render(), "BookGenQueue") == []  # off by default


def test_default_queue_outside_the_watched_namespaces_is_refused(helm: str) -> None:
    with pytest.raises(HelmError, match="defaultQueue: namespace bookgen-system is not in watchNamespaces"):
        run_helm(helm, "template", "bookgen", str(CHART), "-n", "bookgen-system", "--set", "defaultQueue.create=true",
                 "--set-json", 'watchNamespaces=["team-a"]')


def test_kube_version_floor(helm: str) -> None:
    run_helm(helm, "template", "bookgen", str(CHART), "--kube-version", "v1.27.3-eks-1234")  # pre-release suffix ok
    with pytest.raises(HelmError, match="chart requires kubeVersion"):
        run_helm(helm, "template", "bookgen", str(CHART), "--kube-version", "1.26.9")


def test_crd_in_crds_dir_is_the_project_crd(render: Render) -> None:
    (crd,) = by_kind(render(), "CustomResourceDefinition")
    assert crd == yaml.safe_load((ROOT / "crds" / "bookgenqueue.yaml").read_text())


def test_crds_install_renders_an_upgradable_kept_crd(helm: str) -> None:
    """crds.install: the CRD as a template (Helm upgrades it), kept on uninstall; used with --skip-crds."""
    out = run_helm(helm, "template", "bookgen", str(CHART), "--skip-crds", "-f", str(VARIANTS["monitoring"]))
    (crd,) = [o for o in yaml.safe_load_all(out) if o and o["kind"] == "CustomResourceDefinition"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert crd["spec"] == yaml.safe_load((ROOT / "crds" / "bookgenqueue.yaml").read_text())["spec"]
    out = run_helm(helm, "template", "bookgen", str(CHART), "--skip-crds", "--set", "crds.install=true",
                   "--set", "crds.keep=false")
    (crd,) = [o for o in yaml.safe_load_all(out) if o and o["kind"] == "CustomResourceDefinition"]
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_helm_test_pod_probes_the_operator_service(render: Render) -> None:
    objects = render()
    (pod,) = by_kind(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (service,) = by_kind(objects, "Service")
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"http://{service['metadata']['name']}.bookgen-system.svc:8080/healthz" in script
    assert pod["spec"]["automountServiceAccountToken"] is False


def render_notes(helm: str, tmp_path: Path, values: Path | None) -> str:
    """NOTES.txt as `helm install` would print it. `helm install --dry-run` still contacts a cluster,
    so render it with `helm template` from a copy of the chart where a ConfigMap carries it through tpl."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n'
        '  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )
    args = ["template", "bookgen", str(chart), "-n", "bookgen-system", "--show-only", "templates/zz-notes.yaml"]
    out = run_helm(helm, *args, *(["--values", str(values)] if values else []))
    return yaml.safe_load(out)["data"]["notes"]


def test_notes_render_for_every_variant(helm: str, tmp_path: Path) -> None:
    notes = {name: render_notes(helm, tmp_path / name, values) for name, values in VARIANTS.items()}
    for text in notes.values():
        assert "kubectl apply --server-side -f" in text
        assert "helm test bookgen -n bookgen-system" in text
    assert "every namespace" in notes["default"]
    assert "team-a, team-b" in notes["namespaced"]
    assert "get bookgenqueue books" in notes["namespaced"]
    assert "kubectl apply -n <namespace> -f -" in notes["default"]
    assert "ConfigMap bookgen-bookgen-operator-dashboard" in notes["monitoring"]
    assert "Grafana" not in notes["minimal"]


def test_packaged_chart_holds_what_helm_needs_and_no_tooling(helm: str, tmp_path: Path) -> None:
    import tarfile

    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("bookgen-operator-*.tgz")
    with tarfile.open(package) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames()}
    assert {"Chart.yaml", "values.yaml", "values.schema.json", "README.md", "crds/bookgenqueue.yaml",
            "files/dashboard.json", "files/alerts.yaml", "templates/NOTES.txt"} <= names
    assert not [n for n in names if n.startswith("hack/")]


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"].endswith("-0")
    major, minor, patch = (int(x) for x in chart["version"].split("."))
    assert (major, minor, patch) >= (0, 1, 0)
    assert Path(CHART / "values.schema.json").exists()
