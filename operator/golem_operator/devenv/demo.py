"""`golem-operator demo`: the whole product on the embedded default, watched live.

Starts a local control plane and the local Golem network with a few providers, installs the CRD,
runs the operator, applies examples/simple-service.yaml and shows its instances going
Pending -> Starting -> Running with the run script's latest output. On Ctrl-C (or after
--duration seconds) it deletes the service, shows Stopping -> Terminated and the stop script's
marker, and tears everything down. `--kubeconfig` and `--golem-url` use an existing cluster
and daemon instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from golem_operator.devenv.controlplane import ControlPlane, KubectlError
from golem_operator.devenv.stack import ROOT, LocalNetProcess, OperatorProcess, service_view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=ROOT / "examples" / "simple-service.yaml")
    parser.add_argument(
        "--providers", type=Path, default=ROOT / "examples" / "localnet" / "providers.yaml"
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: Ctrl-C)"
    )
    parser.add_argument("--namespace", default="default")


def _table(status: dict[str, Any]) -> str:
    lines = [
        f"phase={status.get('phase', '-')}  ready={status.get('readyReplicas', 0)}"
        f"/{status.get('replicas', 0)}  spent={status.get('spent', '0')} GLM",
        f"{'INSTANCE':<22}{'STATE':<12}{'PROVIDER':<24}{'RESTARTS':<10}LAST RUN / MESSAGE",
    ]
    for instance in status.get("instances", []):
        last = instance.get("lastRun") or {}
        detail = (last.get("stdout") or "").strip().splitlines()[-1:] if last else []
        shown = (
            detail[0] if detail and instance["state"] == "Running" else instance.get("message", "")
        )
        provider = (instance.get("provider") or {}).get("name", "-")
        lines.append(
            f"{instance['name']:<22}{instance['state']:<12}{provider:<24}"
            f"{instance.get('restarts', 0)!s:<10}{shown[:70]}"
        )
    return "\n".join(lines)


def _show(cp: ControlPlane, namespace: str, name: str, previous: str) -> tuple[str, dict[str, Any]]:
    try:
        # The service and its GolemServiceInstance objects (kubectl get gsvc,gsi).
        body = service_view(cp, namespace, name)
    except KubectlError:
        return previous, {}
    text = _table(body.get("status", {}))
    if text != previous:
        print(f"\n--- {time.strftime('%H:%M:%S')} ---\n{text}", flush=True)
    return text, body


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="golem-demo-"))
    print(f"demo work dir (logs): {work}")
    stop = {"now": False}

    def interrupt(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    manifest = yaml.safe_load(args.manifest.read_text())
    name = manifest["metadata"]["name"]
    with ControlPlane(workdir=work / "control-plane") as cp:
        print(f"control plane up: {cp.server} (kubeconfig {cp.kubeconfig})")
        cp.install_crds(ROOT / "crds")
        net = LocalNetProcess(work, config=args.providers).start()
        print(f"local Golem network up: {net.url}")
        operator = OperatorProcess(
            work, cp.kubeconfig, net.url, net.key_file, namespaces=[args.namespace]
        ).start()
        print(f"operator up (log {operator.log}); applying {args.manifest}")
        try:
            cp.kubectl_run("apply", "-n", args.namespace, "-f", str(args.manifest))
            shown = ""
            started = time.monotonic()
            print("watching; Ctrl-C deletes the service and tears everything down")
            while not stop["now"]:
                shown, _ = _show(cp, args.namespace, name, shown)
                if args.duration and time.monotonic() - started > args.duration:
                    break
                time.sleep(1)
            print("\ndeleting the service: instances stop, agreements are settled")
            seen = _show(cp, args.namespace, name, "")[1]
            cp.kubectl_run("delete", "-n", args.namespace, "gsvc", name, "--wait=false")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                shown, body = _show(cp, args.namespace, name, shown)
                if not body:
                    break
                seen = body
                time.sleep(1)
            for instance in seen.get("status", {}).get("instances", []):
                if instance.get("activityId"):
                    marker = net.read_file(instance["activityId"], "/golem/work/stopped")
                    print(
                        f"{instance['name']}: stop script marker "
                        f"{'present' if marker is not None else 'missing'}"
                    )
            audit = net.audit()
            print(
                "agreements: "
                + ", ".join(f"{a['provider']}={a['state']}" for a in audit["agreements"])
            )
            print(
                "invoices: "
                + ", ".join(f"{i['amount']} GLM {i['status']}" for i in audit["invoices"])
            )
        finally:
            operator.stop()
            net.stop()
    print("torn down")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="golem-operator demo")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
