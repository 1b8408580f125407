"""The command line's way into a cluster: the kubeconfig `kubectl` uses, one of its contexts, and the
API errors a user can meet, each said in one line.

The kubeconfig is `--kubeconfig`, else `$KUBECONFIG` (a list of files, as kubectl merges them), else
`~/.kube/config`; the context is `--context`, else the file's current context; the namespace is
`-n`, else the context's own, else `default`: kubectl's rules. Reading and authentication (tokens,
client certificates, exec plugins such as cloud log-ins) are the `kubernetes` client's, the
well-kept library kubectl's users already trust; it is imported only when a command needs a
cluster, so the other commands pay nothing for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bookgen_worker.errors import BookGenError

DEFAULT_KUBECONFIG = Path("~/.kube/config")
#: Seconds one API request may take (reads of a queue, a Secret, a Service, pods).
REQUEST_TIMEOUT = 15.0


class ClusterError(BookGenError):
    """A cluster that cannot be used as asked; the message is one line and says what to do."""


@dataclass(frozen=True)
class Kube:
    """An API client logged in through one context of a kubeconfig."""

    api: Any  # kubernetes.client.ApiClient (the package has no type information)
    context: str
    #: The context's namespace, else "default": where a queue is looked for when -n is not given.
    namespace: str
    server: str


def kubeconfig_files(kubeconfig: str | None, env: Mapping[str, str]) -> str:
    """The kubeconfig to read (kubectl's order); ClusterError when none of its files exists."""
    given = kubeconfig or env.get("KUBECONFIG", "").strip()
    where = "--kubeconfig" if kubeconfig else "KUBECONFIG" if given else ""
    files = given or str(DEFAULT_KUBECONFIG.expanduser())
    if not any(Path(part).expanduser().is_file() for part in files.split(os.pathsep) if part):
        named = f"{files} ({where})" if where else f"{files}, the default (neither --kubeconfig nor KUBECONFIG is set)"
        raise ClusterError(f"no kubeconfig at {named}: a cluster queue is reached through a kubeconfig, "
                           "as kubectl does; name one with --kubeconfig FILE or KUBECONFIG")
    return files


def contexts(files: str) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The contexts of the kubeconfig files by name, and the current one, merged as kubectl merges
    them: the first file that names a context or sets current-context wins."""
    import yaml

    found: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for part in (p for p in files.split(os.pathsep) if p):
        path = Path(part).expanduser()
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"cannot read the kubeconfig {path}: {_one_line(exc)}") from None
        if not isinstance(data, dict):
            raise ClusterError(f"the kubeconfig {path} is not a kubeconfig (no mapping at its top)")
        for entry in data.get("contexts") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                found.setdefault(entry["name"], entry.get("context") or {})
        current = current or data.get("current-context") or None
    return found, current


def login(kubeconfig: str | None, context: str | None, env: Mapping[str, str]) -> Kube:
    """An API client for `context` (None: the current context) of the kubeconfig."""
    try:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise ClusterError("reaching a queue on a cluster needs the Kubernetes client: "
                           "pip install 'bookgen-queue-operator[cluster]'") from None

    files = kubeconfig_files(kubeconfig, env)
    known, current = contexts(files)
    name = context or current
    if not name:
        raise ClusterError(f"the kubeconfig {files} has no current context; name one with --context "
                           f"({', '.join(known) or 'it has none'})")
    if name not in known:
        raise ClusterError(f"the kubeconfig {files} has no context {name!r} (it has: {', '.join(known) or 'none'})")
    try:
        # The client's config functions carry no annotations (its API models do).
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=files, context=name, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise ClusterError(f"cannot use context {name!r} of the kubeconfig {files}: {_one_line(exc)}") from None
    namespace = str(known[name].get("namespace") or "default")
    return Kube(api, name, namespace, str(api.configuration.host))


def plain(kube: Kube, obj: object) -> dict[str, Any]:
    """An API object as the API server writes it (camelCase keys, unset fields left out): the same
    shape whichever version of the client made the model."""
    data = kube.api.sanitize_for_serialization(obj)
    return data if isinstance(data, dict) else {}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _api_message(exc: Any) -> str:
    """The API server's own sentence of an error (its Status message), else the HTTP reason."""
    import json

    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or exc.reason or f"HTTP {exc.status}").strip().splitlines()[0]


@contextlib.contextmanager
def api_errors(kube: Kube, action: str, not_found: str | None = None) -> Iterator[None]:
    """Turn what the API can answer while doing `action` (e.g. "read Secret s in namespace n") into
    one ClusterError line: no right, not found, credentials refused, API server unreachable."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        if status == 404 and not_found:
            raise ClusterError(not_found) from None
        if status == 403:
            raise ClusterError(f"context {kube.context} may not {action}: {_api_message(exc)}") from None
        if status == 401:
            raise ClusterError(f"the API server at {kube.server} refused the credentials of context {kube.context} "
                               "(log in again, e.g. refresh the kubeconfig)") from None
        if status == 0:
            raise ClusterError(f"cannot reach the API server at {kube.server} (context {kube.context}) to "
                               f"{action}: {_one_line(exc)}") from None
        raise ClusterError(f"cannot {action} (context {kube.context}): {_api_message(exc)}") from None
    except (HTTPError, OSError) as exc:
        cause = getattr(exc, "reason", None) or exc  # urllib3's MaxRetryError: the connection's own error
        raise ClusterError(f"cannot reach the API server at {kube.server} (context {kube.context}) to {action}: "
                           f"{_one_line(cause)}") from None
