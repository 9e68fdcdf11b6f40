"""The `golem-operator` command: run the operator, the local Golem network, and tooling.

Subcommands import their modules lazily so that `golem-operator crd` needs no kopf.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _crd(args: argparse.Namespace) -> int:
    from golem_operator.api.crd import CRD_FILES, crd_yaml

    target = Path(args.output)
    if args.output != "-" and target.is_dir():
        # A directory (crds/): every CRD in its own file, as committed.
        for kind, filename in CRD_FILES.items():
            (target / filename).write_text(crd_yaml(kind))
        return 0
    text = crd_yaml(args.kind)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        target.write_text(text)
    return 0


def _local_network(args: argparse.Namespace) -> int:
    from golem_operator.localnet import cli as localnet_cli

    return localnet_cli.run(args)


def _real_network(args: argparse.Namespace) -> int:
    from golem_operator.realnet import cli as realnet_cli

    return realnet_cli.run(args)


def _run(args: argparse.Namespace) -> int:
    from golem_operator.handlers import runner

    return runner.run(args)


def _demo(args: argparse.Namespace) -> int:
    from golem_operator.devenv import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="golem-operator", description="Runs long-lived services on the Golem Network."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    crd = sub.add_parser(
        "crd", help="print or write the CRDs (GolemService, GolemServiceInstance) from the API"
    )
    crd.add_argument(
        "-o",
        "--output",
        default="-",
        help="file to write, or a directory for one file per CRD (default: stdout)",
    )
    crd.add_argument(
        "--kind",
        choices=["all", "service", "instance"],
        default="all",
        help="which CRD (default: both, as one multi-document YAML)",
    )
    crd.set_defaults(func=_crd)

    run = sub.add_parser("run", help="run the operator")
    from golem_operator.handlers import runner

    runner.add_arguments(run)
    run.set_defaults(func=_run)

    localnet = sub.add_parser(
        "local-network", help="serve a local Golem network (yagna's REST API, local providers)"
    )
    try:
        from golem_operator.localnet import cli as localnet_cli
    except ImportError:
        pass
    else:
        localnet_cli.add_arguments(localnet)
    localnet.set_defaults(func=_local_network)
    from golem_operator.realnet import cli as realnet_cli

    realnet = sub.add_parser(
        "real-network",
        help="a private real Golem network (yagna, ya-provider, exe-unit) on loopback",
    )
    realnet_cli.add_arguments(realnet)
    realnet.set_defaults(func=_real_network)
    from golem_operator.devenv import demo

    demo_parser = sub.add_parser(
        "demo", help="local control plane + local Golem network + operator + simple service"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
