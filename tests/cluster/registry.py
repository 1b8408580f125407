"""The container registry of the test cluster: Debian's docker-registry (the CNCF distribution
registry, fetched by scripts/build-node.sh) listening on 127.0.0.1:PORT inside the cluster's network
namespace, with a loopback forwarder on the same port number outside it.

One name, `localhost:PORT/...`, then means the same registry to this machine (`scripts/release`'s
`buildah push` and `helm push`, `helm install oci://`) and to the node's containerd, which pulls from a
localhost registry over plain HTTP without any hosts.toml. Nothing of it listens beyond loopback.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

BINARY = "docker-registry"


def config_text(root: Path, port: int) -> str:
    """The registry's configuration (YAML; JSON is YAML): filesystem storage under the cluster's state."""
    return json.dumps({
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    })  # fmt: skip


def address(port: int) -> str:
    """How both sides name the registry."""
    return f"localhost:{port}"


def answers(port: int) -> bool:
    """The registry's API root answers through the forwarder (GET /v2/ is 200 without auth)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def tags(port: int, repository: str) -> list[str]:
    """The tags the registry holds for `repository` (the distribution API's tag list)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/{repository}/tags/list", timeout=10) as r:
        return list(json.load(r).get("tags") or [])


def manifest_digest(port: int, repository: str, tag: str) -> str:
    """The digest the registry serves `repository:tag` under (what a pod's imageID names)."""
    accept = ", ".join((
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ))  # fmt: skip
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/{repository}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.headers["Docker-Content-Digest"])
