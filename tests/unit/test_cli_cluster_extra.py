"""The Kubernetes client is an extra (`bookgen-queue-operator[cluster]`), not in the image: without it,
`bookgen --queue` says in one line what to install."""

from __future__ import annotations

import sys

import pytest
from bookgen_operator.cli.kube import ClusterError, login


def test_without_the_cluster_extra_the_cli_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # `import kubernetes` now raises ImportError
    with pytest.raises(ClusterError) as err:
        login(None, None, {})
    assert str(err.value) == ("reaching a queue on a cluster needs the Kubernetes client: "
                              "pip install 'bookgen-queue-operator[cluster]'")
