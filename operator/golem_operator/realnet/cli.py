"""`golem-operator real-network`: the private real Golem network until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
from pathlib import Path

from golem_operator.realnet.network import ProviderSpec, RealNetwork, RealNetworkError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--providers", type=int, default=2, help="provider nodes (default 2)")
    parser.add_argument("--subnet", default="public", help="subnet tag of the offers")
    parser.add_argument(
        "--workdir", type=Path, help="state and logs (default: a new temporary folder)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="host port of the requestor's REST API (default: any)"
    )


def run(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="golem-realnet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    providers = [ProviderSpec(f"provider-{i}") for i in range(1, args.providers + 1)]
    network = RealNetwork(workdir, providers=providers, subnet=args.subnet, host_port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        network.start()
    except RealNetworkError as err:
        print(f"real-network: {err}")
        return 1
    try:
        summary = network.summary()
        print(json.dumps(summary, indent=1), flush=True)
        print(
            f"requestor REST at {network.url}; app key in {network.key_file}\n"
            f"e.g. GOLEM_URL={network.url} GOLEM_APPKEY_FILE={network.key_file} "
            "golem-operator run --all-namespaces\nCtrl-C stops the network.",
            flush=True,
        )
        stop.wait()
    finally:
        network.stop()
    return 0
