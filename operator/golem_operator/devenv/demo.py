"""`golem-operator demo`: the whole product on the embedded default, watched live.

Starts a local control plane and the local Golem network with a few providers, installs the CRD,
runs the operator, applies examples/simple-service.yaml and examples/http-service.yaml and shows
their instances going Pending -> Starting -> Running with the run script's latest output, and
the page that an HTTP server inside a Golem activity answers through the http-service's
Kubernetes Service (fetched from the operator's listener, status.proxy: outside a cluster no
kube-proxy routes the Service's ClusterIP). On Ctrl-C (or after --duration seconds) it deletes
the services, shows Stopping -> Terminated and the stop script's marker, and tears everything
down.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from golem_operator.devenv.controlplane import ControlPlane, KubectlError
from golem_operator.devenv.stack import ROOT, LocalNetProcess, OperatorProcess, service_view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, default=ROOT / "examples" / "simple-service.yaml")
    parser.add_argument(
        "--http-manifest",
        type=lambda value: Path(value) if value else None,
        default=ROOT / "examples" / "http-service.yaml",
        help="a GolemService with spec.ports whose page is fetched through its Service "
        "(an empty value leaves it out)",
    )
    parser.add_argument(
        "--providers", type=Path, default=ROOT / "examples" / "localnet" / "providers.yaml"
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: Ctrl-C)"
    )
    parser.add_argument("--namespace", default="default")


def _table(name: str, status: dict[str, Any]) -> str:
    lines = [
        f"{name}: phase={status.get('phase', '-')}  ready={status.get('readyReplicas', 0)}"
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
    text = _table(name, body.get("status", {}))
    if text != previous:
        print(f"\n--- {time.strftime('%H:%M:%S')} ---\n{text}", flush=True)
    return text, body


def fetch_page(status: dict[str, Any]) -> str | None:
    """The page one of the service's instances answers through its Service's listener (the
    operator's, status.proxy), or None while there is none."""
    proxy = status.get("proxy") or {}
    if not proxy.get("ports") or not proxy.get("backends"):
        return None
    port = proxy["ports"][0]
    url = f"http://{proxy['address']}:{port['listenerPort']}/"
    try:
        response = httpx.get(url, headers={"Connection": "close"}, timeout=5)
    except httpx.HTTPError as error:
        return f"{url}: {type(error).__name__}"
    return f"GET {url} (Service {proxy['serviceName']}:{port['port']}) -> " + (
        f"{response.status_code} {response.text.strip()[:120]}"
    )


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="golem-demo-"))
    print(f"demo work dir (logs): {work}")
    stop = {"now": False}

    def interrupt(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    manifests = [args.manifest] + ([args.http_manifest] if args.http_manifest else [])
    names = [yaml.safe_load(m.read_text())["metadata"]["name"] for m in manifests]
    http_name = names[1] if args.http_manifest else None
    with ControlPlane(workdir=work / "control-plane") as cp:
        print(f"control plane up: {cp.server} (kubeconfig {cp.kubeconfig})")
        cp.install_crds(ROOT / "crds")
        net = LocalNetProcess(work, config=args.providers).start()
        print(f"local Golem network up: {net.url}")
        operator = OperatorProcess(
            work, cp.kubeconfig, net.url, net.key_file, namespaces=[args.namespace]
        ).start()
        print(f"operator up (log {operator.log}); applying {', '.join(map(str, manifests))}")
        try:
            for manifest in manifests:
                cp.kubectl_run("apply", "-n", args.namespace, "-f", str(manifest))
            shown = dict.fromkeys(names, "")
            pages: set[str] = set()
            last_page = 0.0
            started = time.monotonic()
            print("watching; Ctrl-C deletes the services and tears everything down")
            while not stop["now"]:
                bodies = {}
                for name in names:
                    shown[name], bodies[name] = _show(cp, args.namespace, name, shown[name])
                if http_name is not None:
                    page = fetch_page(bodies[http_name].get("status", {}))
                    # An answer not seen before at once, then one every 10 s.
                    if page and (page not in pages or time.monotonic() - last_page > 10):
                        print(f"HTTP through the Service's proxy: {page}", flush=True)
                        pages.add(page)
                        last_page = time.monotonic()
                if args.duration and time.monotonic() - started > args.duration:
                    break
                time.sleep(1)
            print("\ndeleting the services: instances stop, agreements are settled")
            seen = {name: _show(cp, args.namespace, name, "")[1] for name in names}
            for name in names:
                cp.kubectl_run("delete", "-n", args.namespace, "gsvc", name, "--wait=false")
            deadline = time.monotonic() + 120
            left = set(names)
            while left and time.monotonic() < deadline:
                for name in sorted(left):
                    shown[name], body = _show(cp, args.namespace, name, shown[name])
                    if not body:
                        left.discard(name)
                    else:
                        seen[name] = body
                time.sleep(1)
            for instance in seen[names[0]].get("status", {}).get("instances", []):
                if instance.get("activityId"):
                    marker = net.read_file(instance["activityId"], "/golem/work/stopped")
                    print(
                        f"{instance['name']}: stop script marker "
                        f"{'present' if marker is not None else 'missing'}"
                    )
            if http_name is not None:
                gone = cp.kubectl_run(
                    "get", "service", http_name, "-n", args.namespace, check=False
                )
                print(f"Service {http_name}: {'deleted' if gone.returncode else 'still there'}")
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
