"""The README's "Connect your application" (issue 23): the Python snippet it shows, run exactly as
written in a fresh interpreter with only what the page says an application pod has in its
environment (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD; no REDIS_URL), submits a book that the job store
then holds. The names it gives (Service, port, Secret, key) are the ones the operator builds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bookgen_operator.core.resources.labels import REDIS_PORT, redis_name
from bookgen_operator.core.spec import parse_queue
from bookgen_worker.config import settings_from_env
from bookgen_worker.jobs import store

from tests.support.readme import connect_section, connect_snippet
from tests.support.redis_server import RedisServer


def test_the_snippet_submits_a_book(redis_server: RedisServer, redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BOOKGEN_"))}
    env.update({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port),
                "REDIS_PASSWORD": redis_server.password})
    done = subprocess.run([sys.executable, "-c", connect_snippet()], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id), done.stdout
    job = store.get_job(settings_from_env({"REDIS_URL": redis_url}), job_id)
    assert (job.subject, job.chapters, job.formats, job.priority) == ("Ada Lovelace", 3, ("markdown", "pdf"), 8)
    assert str(job.state) == "PENDING"


def test_the_names_it_gives_are_the_operators() -> None:
    section = connect_section()
    spec = parse_queue({"metadata": {"name": "books", "namespace": "writers"}, "spec": {}})
    assert f"`{redis_name(spec)}.{spec.namespace}.svc:{REDIS_PORT}`" in section
    assert f"the Secret `{spec.redis_secret_name}`, key `{spec.redis.password_secret_key}`" in section
    assert "spec.redis.allowedClients" in section and "docs/clients.md" in section
