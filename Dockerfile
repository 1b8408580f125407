# One image for every BookGen role: the operator (default), Celery workers, beat and Flower.
# There is no entrypoint wrapper: each role is started by its own exec-form command, so the process
# is PID 1 and receives SIGTERM itself (a Celery worker's warm shutdown needs exactly that):
#   operator  python -m bookgen_operator                      (the default CMD)
#   worker    celery -A bookgen_worker.app worker -Q <queues> -c <n> -P <pool> -n <pool>@%h
#   beat      celery -A bookgen_worker.app beat --schedule /tmp/celerybeat-schedule --pidfile=
#   flower    python -m bookgen_worker.flower                 (credentials from FLOWER_BASIC_AUTH)
#   CLI       bookgen ...
# The operator writes these commands into the pods it creates; the Helm chart runs the operator.
# No HEALTHCHECK: Kubernetes ignores it; the pods have probes (kopf's /healthz, worker heartbeat file).

# ---- build: install the pinned dependencies and the project into a self-contained venv
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock changes. --no-deps:
# the lock is the whole closure, so pip resolves nothing and installs exactly those versions.
COPY requirements.lock ./
RUN pip install --no-cache-dir --no-deps -r requirements.lock

COPY pyproject.toml ./
COPY worker/ worker/
COPY operator/ operator/
# The build backend is pinned too (no build isolation, which would fetch an unpinned setuptools);
# pip and setuptools are removed afterwards: the runtime needs neither.
RUN pip install --no-cache-dir setuptools==80.9.0 \
    && pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip uninstall --yes setuptools pip \
    && python -c "import bookgen_operator, bookgen_worker.app"

# ---- runtime: the venv on the same slim base, as a numeric non-root user
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="bookgen-queue" \
      org.opencontainers.image.description="BookGen queue operator, Celery workers, beat and Flower" \
      org.opencontainers.image.source="https://github.com/bookgen/bookgen-queue-operator"

# A fixed UID/GID (10001) so that runAsNonRoot can verify it and runAsUser matches the chart.
RUN groupadd --system --gid 10001 bookgen \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin bookgen

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    BOOKGEN_OUTPUT_DIR=/tmp/bookgen-output

# The root filesystem is read-only in the pods; everything writable lives under /tmp (an emptyDir).
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9090 9808 5555
CMD ["python", "-m", "bookgen_operator"]
