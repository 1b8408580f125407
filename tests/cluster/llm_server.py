"""A small OpenAI-compatible chat-completions server of ours, run in the test cluster as a user's model
endpoint: a pod of the product image (it has Python) running the script below from a ConfigMap, as its
non-root user on a read-only root, in a restricted namespace, behind a Service.

It answers `POST /v1/chat/completions` only with `Authorization: Bearer <the key in its Secret>`
(401 otherwise), with prose of about the length the prompt asks for that carries a marker only it
knows, and, when the prompt asks for sources, sources in the form the validators accept. Its log
counts what it answered, never a header.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.cluster.conftest import Cluster
from tests.support.waiting import wait_for

NAME = "llm"
PORT = 8000

SERVER = r'''
import json, os, random, re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY, MARKER = os.environ["LLM_KEY"], os.environ["MARKER"]
SYLLABLES = "ka lo mi ra te su no vi de pa ri xo be lu fa go ze hi".split()
SOURCES = "\n\nSOURCES:\n" + "\n".join(f"T. Writer{i}, A Test History {i} (200{i}). Test Press" for i in range(1, 4))


def prose(words, seed):
    rng = random.Random(seed)
    out = f"This passage is {MARKER} text from the test model.".split()
    sentence = 0
    while len(out) < words:
        n = min(rng.randint(8, 14), words - len(out))
        made = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(n)]
        made[0], made[-1] = made[0].capitalize(), made[-1] + "."
        out += made
        sentence += 1
        if sentence % 5 == 0:
            out[-1] += "\n\n"
    return " ".join(out).replace("\n\n ", "\n\n").strip()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": "not found"})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            print("refused a request without the right key", flush=True)
            return self.reply(401, {"error": "invalid api key"})
        prompt = json.loads(body)["messages"][-1]["content"]
        words = int(re.search(r"about (\d+) words", prompt).group(1))
        text = prose(words, prompt) + (SOURCES if "sources" in prompt and "Do not list" not in prompt else "")
        print(f"answered a request for {words} words", flush=True)
        self.reply(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
'''


def _restricted_pod(image: str, key_secret: str, marker: str) -> dict[str, Any]:
    uid = 10001
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "llm", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["python", "/srv/server.py", str(PORT)],
            "env": [{"name": "LLM_KEY", "valueFrom": {"secretKeyRef": {"name": key_secret, "key": "api-key"}}},
                    {"name": "MARKER", "value": marker},
                    {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "ports": [{"name": "http", "containerPort": PORT}],
            "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumeMounts": [{"name": "script", "mountPath": "/srv", "readOnly": True}],
        }],
        "volumes": [{"name": "script", "configMap": {"name": f"{NAME}-server"}}],
    }


def deploy(cluster: Cluster, namespace: str, image: str, key_secret: str, marker: str) -> str:
    """Start the server in `namespace`; returns its base URL as the workers reach it (cluster DNS)."""
    labels = {"app": NAME}
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": f"{NAME}-server"},
                                                          "data": {"server.py": SERVER}})
    cluster.apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": NAME, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": _restricted_pod(image, key_secret, marker)}}})
    cluster.core.create_namespaced_service(namespace, {
        "metadata": {"name": NAME},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]}})

    def ready() -> bool:
        try:
            return (cluster.apps.read_namespaced_deployment(NAME, namespace).status.ready_replicas or 0) >= 1
        except client.ApiException:
            return False

    wait_for(ready, timeout=90, interval=0.5, what="the test model server ready")
    return f"http://{NAME}.{namespace}.svc.cluster.local:{PORT}/v1"
