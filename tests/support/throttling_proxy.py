"""A plain-HTTP proxy in front of a Kubernetes API (like `kubectl proxy`) that can answer 429 for a while.

The proxy logs in to the upstream server with the caller's `Kube` credentials (kopf's ConnectionInfo:
client certificates or a token), so a client needs no credentials of its own: point the operator at it
with `BOOKGEN_KUBE_SERVER`. `throttle(seconds, retry_after)` makes it answer every request with
429 Too Many Requests and `Retry-After`, the way API Priority and Fairness sheds load. Watches are
streamed through line by line.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "authorization", "accept-encoding"}


class ThrottlingProxy:
    def __init__(self, kube: Any) -> None:
        self.kube = kube  # bookgen_operator.controller.client.Kube, logged in to the upstream server
        self._client: httpx.AsyncClient | None = None
        self.until = 0.0
        self.retry_after = "2"
        self.throttled = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    def throttle(self, seconds: float, retry_after: int = 2) -> None:
        self.until, self.retry_after = time.monotonic() + seconds, str(retry_after)

    async def start(self, port: int) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=1)  # open watches must not hold the stop
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def _upstream(self) -> httpx.AsyncClient:
        """A client of the proxy's own: the operator's watches stay open through it (one connection each),
        more than the product client's bounded pool (kube.MAX_CONNECTIONS) holds."""
        if self._client is None:
            from bookgen_operator.controller.client import _ssl_context

            info = self.kube._credentials()
            self._client = httpx.AsyncClient(base_url=info.server.rstrip("/"), verify=_ssl_context(info),
                                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
        return self._client

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self.until:
            self.throttled += 1
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                                      "reason": "TooManyRequests", "message": "too many requests"},
                                     status=429, headers={"Retry-After": self.retry_after})
        _, auth = self.kube._session()
        client = self._upstream()
        # identity: the body is relayed raw, without its Content-Encoding, so it must not be compressed (the
        # API server gzips a response over 128 KiB when asked, and httpx asks by default).
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS} | auth | {
            "Accept-Encoding": "identity"}
        body = await request.read()
        upstream = client.build_request(request.method, request.path_qs, content=body or None, headers=headers,
                                        timeout=httpx.Timeout(30, read=None))
        response = await client.send(upstream, stream=True)
        try:
            out = web.StreamResponse(status=response.status_code, headers={
                k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS | {"content-encoding"}})
            await out.prepare(request)
            async for chunk in response.aiter_raw():
                await out.write(chunk)
            await out.write_eof()
            return out
        except (ConnectionResetError, httpx.HTTPError):
            return out
        finally:
            await response.aclose()
