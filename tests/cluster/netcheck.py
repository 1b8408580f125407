"""Checks made from inside the cluster's network namespace, by a thread that entered it (setns is
per thread), so this machine's own namespace never sends a packet to a 10.x address."""

from __future__ import annotations

import concurrent.futures
import random
import socket
import ssl
import struct
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.cluster.sandbox import inside_netns

T = TypeVar("T")


def in_netns(netns_path: Path, fn: Callable[[], T], timeout: float = 10.0) -> T:
    """fn() run on a fresh thread inside the namespace; its result (or exception) returned here."""

    def entered() -> T:
        with inside_netns(netns_path):
            return fn()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(entered).result(timeout=timeout)


def netns_http_ok(netns_path: Path, url: str) -> bool:
    """GET url from inside the namespace answers 200 (TLS unverified: a health check, not a test)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def get() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return bool(r.status == 200)
        except Exception:
            return False

    return in_netns(netns_path, get)


def dns_query(name: str, server: str = "10.0.0.10", port: int = 53, timeout: float = 2.0) -> list[str]:
    """The A records for `name` from `server` (one UDP query, no library); [] when none."""
    qid = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        reply = s.recv(4096)
    rid, flags, _qd, an, _ns, _ar = struct.unpack(">HHHHHH", reply[:12])
    if rid != qid or flags & 0x000F:  # another query's answer, or an error code (NXDOMAIN, SERVFAIL)
        return []
    i = 12 + len(question) + 4
    found = []
    for _ in range(an):
        if reply[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while reply[i]:
                i += reply[i] + 1
            i += 1
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[i : i + 10])
        i += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[i : i + 4]))
        i += length
    return found


def dns_answers(netns_path: Path, name: str) -> list[str]:
    def ask() -> list[str]:
        try:
            return dns_query(name)
        except OSError:
            return []

    return in_netns(netns_path, ask)
