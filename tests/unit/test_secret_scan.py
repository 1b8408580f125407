"""The pure part of the cluster's secret scan (tests/cluster/secret_scan.py): which Secret values are
searched for, a value found plain and in base64 at any alignment, and findings that never show it."""

from __future__ import annotations

import base64
import json
import secrets

from kubernetes import client

from tests.cluster.secret_scan import SecretScan, SecretValue, base64_cores, scan, secret_values


def secret(name: str, data: dict[str, str], type_: str = "Opaque", namespace: str = "books") -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name, namespace=namespace), type=type_,
                           data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()})


PASSWORD = secrets.token_urlsafe(32)  # as the operator makes them (core/resources/secrets.py)
REDIS = SecretValue("books/q-redis/password", "redis password", PASSWORD)


def test_the_values_searched_for_are_the_secret_ones() -> None:
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    values, skipped = secret_values([
        secret("q-redis", {"password": PASSWORD}),
        secret("q-flower-auth", {"username": "admin", "password": "f" * 43}),
        secret("llm-key", {"api-key": "sk-bookgen-0123456789"}),
        secret("books-s3", {"accessKeyId": "bookgen-root-access", "secretAccessKey": "s" * 30}),
        secret("short", {"password": "p"}),
        secret("tls", {"ca.crt": cert, "tls.key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"}),
        secret("sh.helm.release.v1.op.v1", {"release": "H4sIAAAA" * 10}, "helm.sh/release.v1"),
    ])
    assert {(v.label, v.kind) for v in values} == {
        ("books/q-redis/password", "redis password"), ("books/q-flower-auth/password", "flower password"),
        ("books/llm-key/api-key", "API key"), ("books/books-s3/secretAccessKey", "other"),
        ("books/tls/tls.key", "other")}
    assert set(skipped) == {"books/q-flower-auth/username", "books/books-s3/accessKeyId", "books/short/password",
                            "books/tls/ca.crt", "books/sh.helm.release.v1.op.v1/release"}
    assert "certificate" in skipped["books/tls/ca.crt"] and "shorter" in skipped["books/short/password"]


def test_a_password_is_found_plain_with_its_line() -> None:
    log = f"starting\nconnecting to redis://:{PASSWORD}@q-redis:6379/0\n"
    (found,) = scan({"books/pod/w-1/worker": log, "books/pod/w-2/worker": "starting\n"}, [REDIS])
    assert (found.where, found.secret, found.kind, found.form, found.line) == (
        "books/pod/w-1/worker", "books/q-redis/password", "redis password", "plain", 2)


def test_a_password_is_found_in_base64_whatever_surrounds_it() -> None:
    raw = PASSWORD.encode()
    for prefix in (b"", b"x:", b"user:", b'{"password": "'):  # the three alignments inside longer data
        encoded = base64.b64encode(prefix + raw + b'"}').decode()
        (found,) = scan({"status": json.dumps({"data": encoded})}, [REDIS])
        assert found.form == "base64", prefix
        urlsafe = base64.urlsafe_b64encode(prefix + raw).decode()
        assert scan({"log": urlsafe}, [REDIS]), prefix


def test_a_base64_core_is_in_every_encoding_of_data_that_holds_the_value() -> None:
    raw = b"s3cr3t-v4lue"
    cores = base64_cores(raw)
    for before in range(7):
        for after in range(4):
            data = secrets.token_bytes(before) + raw + secrets.token_bytes(after)
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                assert any(core in encode(data).decode() for core in cores), (before, after)
    # Each core carries only the value's bits: at least 10 characters of its 12 bytes' 16.
    assert min(len(core) for core in cores) >= 10


def test_nothing_is_found_where_there_is_nothing() -> None:
    noise = base64.b64encode(secrets.token_bytes(4096)).decode() + "\nadmin logged in\n" + "x" * 10000
    assert scan({"log": noise}, [REDIS]) == []


def test_a_finding_and_the_ledger_never_show_the_secret() -> None:
    other = SecretValue("books/llm-key/api-key", "API key", "sk-" + secrets.token_hex(20))
    log = f"GET / key={other.value} auth={base64.b64encode(PASSWORD.encode()).decode()} pw={PASSWORD}"
    ledger = SecretScan()
    ledger.known = {(v.label, v.fingerprint): v for v in (REDIS, other)}
    found = ledger.judge({"books/pod/app/app": log})
    assert {(f.secret, f.form) for f in found} == {
        ("books/q-redis/password", "plain"), ("books/q-redis/password", "base64"), ("books/llm-key/api-key", "plain")}
    shown = "\n".join([*map(str, found), repr(found), repr(ledger), ledger.summary(), repr(REDIS), str(REDIS)])
    for value in (REDIS, other):
        assert not [n for n in value.needles() if n in shown], value.label
    assert "«books/q-redis/password»" in shown and REDIS.fingerprint in shown
    assert "3 findings" in ledger.summary()
