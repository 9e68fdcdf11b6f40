"""`golem-operator run`: start the kopf operator with the registration module's handlers."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket

import kopf
from kopf._core.engines import peering

from golem_operator.config import ConfigError, OperatorConfig
from golem_operator.observability import logs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="no peering (default)")
    peering.add_argument("--peering", metavar="NAME", help="kopf peering name (standby replicas)")
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="peering priority: the highest-priority replica works, the others stand by",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not serve Prometheus metrics")


def run(args: argparse.Namespace) -> int:
    try:
        config = OperatorConfig.from_env()
    except ConfigError as error:
        print(f"golem-operator: configuration error: {error}")
        return 2
    logs.setup(config.log_format, config.log_level)
    from golem_operator.handlers import registration  # noqa: F401  (registers the handlers)

    namespaces = list(args.namespace) or list(config.namespaces)
    clusterwide = args.all_namespaces or not namespaces
    # Known to the engine too: it reads its own entry in the peering object to pause its
    # tasks when kopf pauses its handlers.
    identity = f"golem-operator@{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
    asyncio.run(
        kopf.operator(
            standalone=not args.peering,
            peering_name=args.peering,
            priority=args.priority,
            identity=peering.Identity(identity),
            namespaces=[] if clusterwide else namespaces,
            clusterwide=clusterwide,
            liveness_endpoint=f"http://{config.bind_address}:{config.health_port}/healthz"
            if config.health_port
            else None,
            memo=kopf.Memo(
                config=config,
                metrics=not args.no_metrics,
                peering=args.peering,
                priority=args.priority,
                identity=identity,
                namespaces=namespaces,
                clusterwide=clusterwide,
            ),
        )
    )
    return 0
