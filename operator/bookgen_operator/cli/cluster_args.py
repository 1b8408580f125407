"""The options that name a queue on a cluster, kubectl's way: `-n/--namespace`, `--queue`,
`--context`, `--kubeconfig`, before or after the sub-command (`bookgen -n books --queue q jobs`,
`bookgen jobs -n books --queue q`).

`bookgen status --queue NAME` already filters Celery queues, so after `status` only `--queue` keeps
that meaning; the BookGenQueue is named before it (`bookgen -n books --queue q status`). The dests
are prefixed so they never meet a sub-command's own (`render -n`, `status --queue`).
"""

from __future__ import annotations

import argparse

from bookgen_worker.config import ConfigError

from .cluster import QueueRef

#: (flag, dest) of each option; the dests are what queue_ref() reads.
OPTIONS = (("--queue", "cluster_queue"), ("--namespace", "cluster_namespace"), ("--context", "cluster_context"),
           ("--kubeconfig", "cluster_kubeconfig"))


def add_cluster_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Sub-parsers default to SUPPRESS, so they never overwrite a value given before the sub-command.
    A sub-command that has a `--queue` of its own (status) keeps it."""
    default = None if top else argparse.SUPPRESS
    if "--queue" not in parser._option_string_actions:
        parser.add_argument("--queue", dest="cluster_queue", default=default, metavar="NAME",
                            help="a BookGenQueue on a cluster: reach its Redis through the API server "
                                 "(with -n, --context, --kubeconfig; no REDIS_URL needed)")
    parser.add_argument("-n", "--namespace", dest="cluster_namespace", default=default, metavar="NS",
                        help="the namespace of --queue (default: the context's, else default)")
    parser.add_argument("--context", dest="cluster_context", default=default, metavar="CTX",
                        help="the kubeconfig context of --queue (default: the current context)")
    parser.add_argument("--kubeconfig", dest="cluster_kubeconfig", default=default, metavar="FILE",
                        help="the kubeconfig of --queue (default: $KUBECONFIG, else ~/.kube/config)")


def given(args: argparse.Namespace) -> list[str]:
    """The cluster options this command line set, as flags."""
    return [flag for flag, dest in OPTIONS if getattr(args, dest, None)]


def queue_ref(args: argparse.Namespace) -> QueueRef | None:
    """The cluster queue the command line names, or None; ConfigError for options without a queue."""
    name = getattr(args, "cluster_queue", None)
    if not name:
        extra = given(args)
        if extra:
            raise ConfigError(f"{', '.join(extra)}: for a queue on a cluster, but no --queue NAME names one "
                              "(e.g. bookgen -n NAMESPACE --queue NAME jobs)")
        return None
    return QueueRef(name, getattr(args, "cluster_namespace", None), getattr(args, "cluster_context", None),
                    getattr(args, "cluster_kubeconfig", None))
