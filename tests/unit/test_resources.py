"""Builders: every manifest validates against the official Kubernetes schema (kubernetes-validate,
strict: unknown fields are errors), every pod meets the "restricted" Pod Security Standard
(acceptance 1), and the manifests say what the design needs (names, labels, probes, shutdown)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from bookgen_operator.cli.spec_file import load_queue_file
from bookgen_operator.core.resources import (
    desired_objects,
    generated_secrets,
    monitoring_objects,
    pod_specs,
)
from bookgen_operator.core.resources.labels import REPLICAS_OWNER_ANNOTATION
from bookgen_operator.core.resources.workers import worker_command
from bookgen_operator.core.spec import QueueSpec, parse_queue

from tests.support.pod_security import restricted_violations

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31.0"


def default_spec() -> QueueSpec:
    return parse_queue({"metadata": {"name": "bq", "namespace": "books"}, "spec": {}})


SPECS = {
    "default": default_spec,
    "full": lambda: load_queue_file(ROOT / "examples" / "bookgenqueue-full.yaml"),
    "external-redis": lambda: load_queue_file(ROOT / "examples" / "bookgenqueue-external-redis.yaml"),
    "no-persistence-no-extras": lambda: parse_queue(
        {
            "metadata": {"name": "lean"},
            "spec": {
                "redis": {"persistence": {"enabled": False}},
                "beat": {"enabled": False},
                "flower": {"enabled": False},
                "autoscaling": {"enabled": False},
            },
        }
    ),
}


def all_objects(spec: QueueSpec) -> list[dict[str, Any]]:
    return desired_objects(spec) + generated_secrets(spec)


def object_ids(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


@pytest.mark.parametrize("which", SPECS)
def test_every_manifest_validates_against_the_kubernetes_schema(which: str) -> None:
    spec = SPECS[which]()
    objects = all_objects(spec)
    assert objects
    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True), obj["metadata"]["name"]


def test_the_strict_validator_really_rejects_a_bad_manifest() -> None:
    deployment = next(o for o in desired_objects(default_spec()) if o["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.parametrize("which", SPECS)
def test_every_pod_meets_the_restricted_profile(which: str) -> None:
    pods = pod_specs(desired_objects(SPECS[which]()))
    assert pods
    for name, pod in pods:
        assert restricted_violations(pod) == [], name


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (
            lambda p: (
                p["securityContext"].pop("runAsNonRoot") and p["containers"][0]["securityContext"].pop("runAsNonRoot")
            ),
            "runAsNonRoot",
        ),
        (
            lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
        (lambda p: p["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}), "drop ALL"),
        (
            lambda p: p["containers"][0]["securityContext"].update(
                capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}
            ),
            "only NET_BIND_SERVICE",
        ),
        (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (
            lambda p: (
                p["securityContext"].update(seccompProfile={"type": "Unconfined"})
                or p["containers"][0]["securityContext"].pop("seccompProfile")
            ),
            "seccompProfile",
        ),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}), "type nfs"),
        (
            lambda p: p["containers"][0].setdefault("ports", []).append({"containerPort": 80, "hostPort": 80}),
            "hostPort",
        ),
        (lambda p: p["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser must not be 0"),
        (lambda p: p.update(hostPID=True), "hostPID"),
        (lambda p: p["containers"][0]["securityContext"].update(windowsOptions={"hostProcess": True}), "hostProcess"),
    ],
)
def test_restricted_violations_catches_a_bad_pod(mutate: Any, expected: str) -> None:
    pod = copy.deepcopy(pod_specs(desired_objects(default_spec()))[1][1])
    assert restricted_violations(pod) == []
    mutate(pod)
    violations = restricted_violations(pod)
    assert any(expected in v for v in violations), violations


def test_default_spec_children_and_names() -> None:
    ids = object_ids(desired_objects(default_spec()))
    assert ids == [
        "Service/bq-redis",
        "Service/bq-redis-headless",
        "NetworkPolicy/bq-redis",
        "StatefulSet/bq-redis",
        "PersistentVolumeClaim/bq-exports",
        "Deployment/bq-worker-content",
        "PodDisruptionBudget/bq-worker-content",
        "Deployment/bq-worker-validation",
        "PodDisruptionBudget/bq-worker-validation",
        "Deployment/bq-worker-export",
        "PodDisruptionBudget/bq-worker-export",
        "Deployment/bq-worker-monitoring",
        "PodDisruptionBudget/bq-worker-monitoring",
        "Service/bq-metrics",
        "Deployment/bq-beat",
        "Deployment/bq-flower",
        "Service/bq-flower",
    ]
    assert object_ids(generated_secrets(default_spec())) == ["Secret/bq-redis", "Secret/bq-flower-auth"]


def test_every_child_has_the_standard_labels_and_namespace() -> None:
    for obj in desired_objects(default_spec()) + monitoring_objects(default_spec(), True):
        meta = obj["metadata"]
        assert meta["namespace"] == "books"
        assert "ownerReferences" not in meta
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "bookgen"
        assert labels["app.kubernetes.io/instance"] == "bq"
        assert labels["app.kubernetes.io/part-of"] == "bookgen"
        assert labels["app.kubernetes.io/managed-by"] == "bookgen-operator"
        assert labels["app.kubernetes.io/component"] in ("redis", "worker", "beat", "flower", "metrics", "exports")


def test_selectors_match_their_pod_templates() -> None:
    objects = desired_objects(default_spec())
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in objects if "template" in o["spec"]
    }
    for obj in objects:
        sel = obj["spec"].get("selector")
        if obj["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            matched = [n for n, labels in pods.items() if sel["matchLabels"].items() <= labels.items()]
            assert matched == [obj["metadata"]["name"]], obj["metadata"]["name"]
        elif obj["kind"] == "Service":
            assert any(sel.items() <= labels.items() for labels in pods.values()), obj["metadata"]["name"]


def test_worker_deployment_follows_the_contract() -> None:
    spec = default_spec()
    deployment = next(o for o in desired_objects(spec) if o["metadata"]["name"] == "bq-worker-content")
    assert deployment["metadata"]["labels"]["bookgen.io/pool"] == "content"
    assert deployment["metadata"]["annotations"][REPLICAS_OWNER_ANNOTATION] == "autoscaler"
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "celery", "-A", "bookgen_worker.app", "worker", "-Q", "content_generation,high_priority",
        "-c", "2", "-P", "prefork", "-n", "content@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    assert "args" not in container  # exec form, celery is PID 1 and gets SIGTERM
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_HOST"]["value"] == "bq-redis" and env["REDIS_PORT"]["value"] == "6379"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "bq-redis", "key": "password"}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["BOOKGEN_POOL"]["value"] == "content"
    assert env["BOOKGEN_HEARTBEAT_FILE"]["value"] == "/tmp/heartbeat"
    assert env["BOOKGEN_METRICS_PORT"]["value"] == "off"
    assert container["livenessProbe"]["exec"]["command"] == [
        "python", "-m", "bookgen_worker.heartbeat", "--check", "/tmp/heartbeat", "--max-age", "60",
    ]  # fmt: skip
    assert pod["terminationGracePeriodSeconds"] >= spec.worker.soft_time_limit + 30
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False
    assert not any("value" in e and "password" in e["name"].lower() for e in container["env"])


def test_monitoring_pool_serves_metrics_and_the_service_selects_it() -> None:
    objects = desired_objects(default_spec())
    monitoring = next(o for o in objects if o["metadata"]["name"] == "bq-worker-monitoring")
    (container,) = monitoring["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["BOOKGEN_METRICS_PORT"] == "9808"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9808, "protocol": "TCP"}]
    service = next(o for o in objects if o["metadata"]["name"] == "bq-metrics")
    assert service["spec"]["selector"]["bookgen.io/pool"] == "monitoring"
    assert service["spec"]["ports"][0]["port"] == 9808


def test_full_spec_overrides_reach_the_manifests() -> None:
    spec = SPECS["full"]()
    objects = {f"{o['kind']}/{o['metadata']['name']}": o for o in desired_objects(spec)}
    content = objects["Deployment/bookgen-full-worker-content"]
    (c,) = content["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.example.com/bookgen/bookgen-queue:0.1.0@" + spec.image.digest
    assert c["imagePullPolicy"] == "Always"
    assert c["command"][c["command"].index("-P") + 1] == "threads"
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert content["spec"]["replicas"] == 0  # minReplicas 0: the autoscaler wakes the pool
    assert content["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 1800 + 30
    assert worker_command(spec.pool("export"))[5] == "export,default"
    sts = objects["StatefulSet/bookgen-full-redis"]
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "5Gi" and claim["storageClassName"] == "fast-ssd"
    redis_env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "bookgen-full-redis-password",
        "key": "redis-password",
    }
    flower_env = {
        e["name"]: e
        for e in objects["Deployment/bookgen-full-flower"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert flower_env["FLOWER_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "bookgen-full-flower-login",
        "key": "username",
    }
    flower_command = objects["Deployment/bookgen-full-flower"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert flower_command[:3] == ["python", "-m", "bookgen_worker.flower"]
    assert flower_command[flower_command.index("--max-tasks") + 1] == "5000"
    assert "FLOWER_PASSWORD" in flower_env and not any("password" in arg.lower() for arg in flower_command)
    assert generated_secrets(spec) == []  # both Secrets are named by the user
    assert [o["kind"] for o in monitoring_objects(spec, crds_present=False)] == ["ServiceMonitor"]  # always/never


def test_redis_statefulset_uses_the_secret_and_append_only_persistence() -> None:
    sts = next(o for o in desired_objects(default_spec()) if o["kind"] == "StatefulSet")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    args = c["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert sts["spec"]["serviceName"] == "bq-redis-headless"
    assert "readinessProbe" in c and "livenessProbe" in c and c["resources"]["limits"]["memory"] == "256Mi"


def test_redis_without_persistence_uses_an_empty_dir() -> None:
    sts = next(o for o in desired_objects(SPECS["no-persistence-no-extras"]()) if o["kind"] == "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    assert {"name": "data", "emptyDir": {}} in sts["spec"]["template"]["spec"]["volumes"]


def test_optional_children_follow_the_spec() -> None:
    lean = object_ids(desired_objects(SPECS["no-persistence-no-extras"]()))
    assert not any("beat" in i or "flower" in i for i in lean)
    lean_worker = next(o for o in desired_objects(SPECS["no-persistence-no-extras"]()) if o["kind"] == "Deployment")
    assert lean_worker["metadata"]["annotations"][REPLICAS_OWNER_ANNOTATION] == "reconcile"
    external = object_ids(desired_objects(SPECS["external-redis"]()))
    assert not any("redis" in i for i in external)
    worker = next(o for o in desired_objects(SPECS["external-redis"]()) if o["kind"] == "Deployment")
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["value"] == "rediss://redis.example.internal:6380/0" and "REDIS_HOST" not in env
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "bookgen-redis-credentials"


def test_beat_is_a_single_replica_recreated_deployment() -> None:
    beat = next(o for o in desired_objects(default_spec()) if o["metadata"]["name"] == "bq-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"][:4] == [
        "celery",
        "-A",
        "bookgen_worker.app",
        "beat",
    ]


def test_network_policy_admits_only_this_instances_pods_and_the_operator_to_redis() -> None:
    policy = next(o for o in desired_objects(default_spec(), "bookgen-system") if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    (rule,) = policy["spec"]["ingress"]
    operator = {"matchLabels": {"app.kubernetes.io/part-of": "bookgen", "app.kubernetes.io/component": "operator"}}
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "bookgen", "app.kubernetes.io/instance": "bq"}}},
        # The operator reads busy workers from Redis: without this, no pool could ever scale in.
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bookgen-system"}},
         "podSelector": operator},
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    anywhere = next(o for o in desired_objects(default_spec()) if o["kind"] == "NetworkPolicy")
    assert anywhere["spec"]["ingress"][0]["from"][1] == {"namespaceSelector": {}, "podSelector": operator}


def test_monitoring_toggles() -> None:
    spec = default_spec()  # auto
    assert [o["kind"] for o in monitoring_objects(spec, crds_present=True)] == ["ServiceMonitor", "PrometheusRule"]
    assert monitoring_objects(spec, crds_present=False) == []


def test_builders_are_deterministic() -> None:
    assert desired_objects(default_spec()) == desired_objects(default_spec())


MONITORING_SCHEMAS = ROOT / "tests" / "crd" / "prometheus-operator-subset.yaml"


@pytest.mark.parametrize("which", SPECS)
def test_monitoring_objects_validate_against_the_prometheus_operator_schema_subset(which: str) -> None:
    import jsonschema
    import yaml

    schemas = yaml.safe_load(MONITORING_SCHEMAS.read_text())
    objects = [o for o in monitoring_objects(SPECS[which](), crds_present=True)]
    for obj in objects:
        jsonschema.validate(obj, schemas[obj["kind"]])
        # kubernetes-validate has no schema for these kinds: it says so rather than passing them silently
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_service_monitor_selects_the_metrics_service() -> None:
    spec = default_spec()
    (monitor,) = [o for o in monitoring_objects(spec, True) if o["kind"] == "ServiceMonitor"]
    service = next(o for o in desired_objects(spec) if o["metadata"]["name"] == "bq-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # ... and no other Service of the instance
    others = [o for o in desired_objects(spec) if o["kind"] == "Service" and o["metadata"]["name"] != "bq-metrics"]
    assert not any(
        monitor["spec"]["selector"]["matchLabels"].items() <= o["metadata"]["labels"].items() for o in others
    )


def _container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    obj = next(o for o in objects if o["metadata"]["name"] == name)
    return obj["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("which", ["default", "full"])
def test_commands_parse_with_the_real_command_lines(which: str) -> None:
    """The worker and beat commands are accepted by Celery's own CLI, Flower's by bookgen_worker.flower."""
    from bookgen_worker.app import app
    from bookgen_worker.flower import build_parser, flower_command
    from celery.bin.base import CLIContext
    from celery.bin.beat import beat
    from celery.bin.worker import worker

    spec = SPECS[which]()
    objects = desired_objects(spec)
    cli = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    for pool in spec.pools:
        command = _container(objects, f"{spec.name}-worker-{pool.name}")["command"]
        assert command[:4] == ["celery", "-A", "bookgen_worker.app", "worker"]
        params = worker.make_context("worker", command[4:], obj=cli).params
        assert params["queues"] == list(pool.queues)
        assert params["concurrency"] == pool.concurrency
        assert params["hostname"].startswith(f"{pool.name}@")
    command = _container(objects, f"{spec.name}-beat")["command"]
    assert beat.make_context("beat", command[4:], obj=cli).params["schedule"].startswith("/tmp/")
    flower = _container(objects, f"{spec.name}-flower")
    assert flower["command"][:3] == ["python", "-m", "bookgen_worker.flower"]
    env = {e["name"]: "secret-value" for e in flower["env"] if "valueFrom" in e} | {
        e["name"]: e["value"] for e in flower["env"] if "value" in e
    }
    args = build_parser().parse_args(flower["command"][3:])
    run, child_env = flower_command(args, env)
    assert f"--max_tasks={spec.flower.max_tasks}" in run
    assert child_env["FLOWER_BASIC_AUTH"] == "secret-value:secret-value"


def test_the_liveness_probe_runs_the_real_heartbeat_check(tmp_path: Path) -> None:
    """The probe's arguments work with bookgen_worker.heartbeat: fresh file -> 0, missing file -> 1."""
    from bookgen_worker import heartbeat

    probe = _container(desired_objects(default_spec()), "bq-worker-content")["livenessProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-m", "bookgen_worker.heartbeat"]
    args = probe[3:]
    file_arg = args.index("--check") + 1
    fresh = tmp_path / "heartbeat"
    heartbeat.touch(fresh)
    assert heartbeat.main([*args[:file_arg], str(fresh), *args[file_arg + 1 :]]) == 0
    assert heartbeat.main([*args[:file_arg], str(tmp_path / "missing"), *args[file_arg + 1 :]]) == 1


def test_the_operators_prometheus_rule_is_the_canonical_alert_file_scoped_to_its_queue() -> None:
    from bookgen_operator.core.resources.monitoring import build_prometheus_rule, canonical_alert_rules

    spec = parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                        "metadata": {"name": "books", "namespace": "team-a"}, "spec": {}})
    rules = build_prometheus_rule(spec)["spec"]["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == [rule["alert"] for rule in canonical_alert_rules()]
    for rule in rules:
        selectors = re.findall(r"\b(?:bookgen|celery)_[a-z_]+\{[^}]*\}", rule["expr"])
        assert selectors, rule["expr"]
        assert all('namespace="team-a",service="books-metrics"' in selector for selector in selectors)


def test_the_autoscaler_reads_the_series_of_its_own_queue_only() -> None:
    """Two BookGenQueues in one namespace share the default queue names; the Prometheus queries must
    select this queue's metrics Service, the one its ServiceMonitor scrapes."""
    from bookgen_operator.controller.autoscaling import source_options
    from bookgen_operator.core.resources.monitoring import build_service_monitor
    from bookgen_operator.sources.prometheus import pool_queries

    spec = parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                        "metadata": {"name": "books", "namespace": "team-a"},
                        "spec": {"autoscaling": {"source": "prometheus", "prometheusUrl": "http://prom:9090"}}})
    options = source_options(spec)
    scraped = build_service_monitor(spec)["spec"]["selector"]["matchLabels"]
    (service,) = [o for o in desired_objects(spec) if o["kind"] == "Service"
                  and scraped.items() <= o["metadata"]["labels"].items()]
    assert options["labels"] == {"namespace": "team-a", "service": service["metadata"]["name"]}
    assert options["endpoint_url"] == f"http://{service['metadata']['name']}.team-a.svc:9808/metrics"
    for query in pool_queries(spec.pools[0], options["labels"]).values():
        assert 'namespace="team-a",service="books-metrics"' in query
