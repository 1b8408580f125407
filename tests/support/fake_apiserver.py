"""A few paths of a Kubernetes API server over real HTTP, for the CLI's cluster path in unit tests:
objects by path, 403 and 404 answers as the API server writes them (a Status), and a pod's
`portforward` as a real WebSocket speaking the channel protocol (v4.channel.k8s.io: channel 0 data,
channel 1 errors, each opened with its port number), relayed to a real TCP address.

The `kubernetes` client talks to it through a kubeconfig like any other server (`kubeconfig()`), so
what runs is the client's own code: kubeconfig reading, requests, the websocket handshake, its
port-forward proxy. The real API server and kubelet are in tests/cluster.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import select
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def status(code: int, message: str) -> dict[str, Any]:
    reason = {403: "Forbidden", 404: "NotFound", 401: "Unauthorized"}.get(code, "Error")
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


class FakeApiServer:
    def __init__(self) -> None:
        #: path -> object (GET answers it), or (code, message) for an error Status.
        self.objects: dict[str, Any] = {}
        #: pod portforward path -> (host, port) it leads to, or (code, message) to refuse the handshake.
        self.forwards: dict[str, Any] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                server.requests.append(url.path)
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    server._websocket(self, url.path, parse_qs(url.query))
                    return
                found = server.objects.get(url.path)
                if isinstance(found, tuple):
                    self._answer(found[0], status(*found))
                elif found is None:
                    self._answer(404, status(404, "the server could not find the requested resource"))
                else:
                    self._answer(200, found)

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path, namespace: str | None = None, current: bool = True) -> Path:
        context: dict[str, Any] = {"cluster": "fake", "user": "tester"}
        if namespace:
            context["namespace"] = namespace
        config: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": context}],
        }
        if current:
            config["current-context"] = "fake"
        path.write_text(yaml.safe_dump(config))
        return path

    # -- the portforward WebSocket ----------------------------------------------------------------

    def _websocket(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        target = self.forwards.get(path)
        if target is None or (isinstance(target[0], int) and isinstance(target[1], str)):
            code, message = target if target is not None else (404, f"pods not found ({path})")
            data = json.dumps(status(code, message)).encode()
            handler.send_response(code)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        accept = base64.b64encode(hashlib.sha1((handler.headers["Sec-WebSocket-Key"] + _GUID).encode()).digest())
        handler.send_response(101)
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept.decode())
        handler.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        handler.end_headers()
        handler.wfile.flush()
        conn: socket.socket = handler.connection
        port = int(query["ports"][0])
        opening = struct.pack("<H", port)
        conn.sendall(_frame(b"\x00" + opening) + _frame(b"\x01" + opening))
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError as exc:
            conn.sendall(_frame(b"\x01" + f"an error occurred forwarding {port} -> {port}: {exc}".encode()))
            _close(conn)
            return
        _relay(conn, upstream)
        handler.close_connection = True


def _frame(payload: bytes, opcode: int = 0x2) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(conn: socket.socket) -> tuple[int, bytes]:
    first, second = _read_exact(conn, 2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", _read_exact(conn, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _read_exact(conn, 8))[0]
    mask = _read_exact(conn, 4) if second & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(conn, size)))
    return first & 0x0F, payload


def _relay(conn: socket.socket, upstream: socket.socket) -> None:
    try:
        while True:
            readable, _, _ = select.select([conn, upstream], [], [])
            if upstream in readable:
                data = upstream.recv(65536)
                if not data:
                    break
                conn.sendall(_frame(b"\x00" + data))
            if conn in readable:
                opcode, payload = _read_frame(conn)
                if opcode == 0x8:
                    break
                if opcode == 0x2 and payload[:1] == b"\x00" and len(payload) > 1:
                    upstream.sendall(payload[1:])
    except (OSError, ConnectionError):
        pass
    finally:
        upstream.close()
        _close(conn)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(_frame(b"", opcode=0x8))
