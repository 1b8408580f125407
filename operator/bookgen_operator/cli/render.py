"""`bookgen render`: the Kubernetes manifests the operator would create for a BookGenQueue file.

The Secrets holding the Redis password and Flower's login are referenced, not included, so applying
the output again never changes a running Redis's password; the header shows how to create them once,
or `--generate-secrets` includes them with fresh random values.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec and the builders are imported where used: `bookgen --help` needs neither
    from bookgen_operator.core.spec import QueueSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    render = subparsers.add_parser("render", help="print the Kubernetes manifests the operator would create")
    render.add_argument("-f", "--file", type=Path, required=True, help="a BookGenQueue YAML")
    render.add_argument("-n", "--namespace", help="the namespace to render for (default: the file's "
                                                   "metadata.namespace, else default)")
    render.add_argument("--generate-secrets", action="store_true",
                        help="include the Secrets with fresh random passwords (by default they are only "
                             "referenced, so applying the output again never rotates a running Redis's password)")
    render.set_defaults(handler=cmd_render)


def render_manifests(spec: QueueSpec, *, generate_secrets: bool = False) -> str:
    import yaml

    from bookgen_operator.core.resources import desired_objects, generated_secrets, monitoring_objects

    secrets = generated_secrets(spec)
    header = [f"# Manifests the BookGen operator creates for BookGenQueue {spec.namespace}/{spec.name}."]
    if generate_secrets:
        header += ["# The Secrets below hold freshly generated random values: apply them once; rendering again",
                   "# gives new ones, and applying those would change a running Redis's password."]
    elif secrets:
        header += ["# The Secrets they reference are not included (applying this again must not change a",
                   "# password). Create them once, e.g.:"]
        for secret in secrets:
            keys = " ".join(f"--from-literal={key}=\"$(openssl rand -hex 24)\"" if key != "username" else
                            f"--from-literal={key}={value}" for key, value in secret["stringData"].items())
            header.append(f"#   kubectl create secret generic {secret['metadata']['name']} -n {spec.namespace} {keys}")
        header.append("# or render once with --generate-secrets.")
    header += ["# ServiceMonitor/PrometheusRule (metrics.*: auto) appear only when the Prometheus Operator CRDs",
               "# exist, so they are included here only if set to `always`."]
    docs = []
    for obj in [*(secrets if generate_secrets else []), *desired_objects(spec),
                *monitoring_objects(spec, crds_present=False)]:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": spec.namespace}}
        docs.append(yaml.safe_dump(obj, sort_keys=False))
    return "\n".join(header) + "\n---\n" + "---\n".join(docs)


def spec_in_namespace(path: Path, namespace: str | None) -> QueueSpec:
    """The spec as the operator would see it in `namespace` (kubectl's rule: a file naming another
    namespace than -n is an error, not silently moved)."""
    from bookgen_operator.cli.spec_file import load_queue_file
    from bookgen_operator.core.spec import SpecError

    spec = load_queue_file(path)
    if namespace is None:
        return spec
    written = _file_namespace(path)
    if written and written != namespace:
        raise SpecError(f"{path} is for namespace {written!r}, not {namespace!r}: drop its metadata.namespace "
                        "or pass the same -n")
    return dataclasses.replace(spec, namespace=namespace)


def _file_namespace(path: Path) -> str | None:
    import yaml

    try:
        body = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    meta = body.get("metadata") if isinstance(body, dict) else None
    value = meta.get("namespace") if isinstance(meta, dict) else None
    return str(value) if value else None


def cmd_render(args: argparse.Namespace) -> int:
    spec = spec_in_namespace(args.file, args.namespace)
    sys.stdout.write(render_manifests(spec, generate_secrets=args.generate_secrets))
    return 0
