"""The cluster tier: a real single-node Kubernetes on this machine (devenv/cluster.py).

`cluster` starts it once for the package (etcd, kube-apiserver, controller-manager, scheduler,
kubelet on containerd and runc, kube-proxy, CoreDNS, a PVC provisioner) with the project's image
built from the Dockerfile imported into containerd, and tears it down afterwards, checking that
no process, mount, bridge or iptables rule is left. `localnet` is the local Golem network on the
host, reached from pods through a relay on the cluster's bridge address. If the cluster cannot
start, every test here fails: nothing is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_operator.devenv.cluster import BridgeRelay, Cluster, leftovers
from golem_operator.devenv.stack import LocalNetProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHART = ROOT / "charts" / "golem-operator"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    started = time.monotonic()
    instance = Cluster().start()
    print(f"\n[cluster] up in {time.monotonic() - started:.0f}s: {instance.timings}")
    state_dir = instance.state_dir
    try:
        yield instance
    finally:
        stopped = time.monotonic()
        instance.stop()
        print(f"\n[cluster] torn down in {time.monotonic() - stopped:.0f}s")
        left = leftovers(state_dir)
        assert not any(left.values()), f"the cluster left things behind: {left}"


@pytest.fixture(scope="package")
def localnet(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalNetProcess, str]]:
    """(the local network, its URL as pods see it: the relay on the cluster's bridge)."""
    net = LocalNetProcess(tmp_path_factory.mktemp("cluster-localnet"), HERE / "providers.yaml")
    net.start()
    relay = BridgeRelay(net.port)
    try:
        yield net, relay.url
    finally:
        relay.close()
        net.stop()
