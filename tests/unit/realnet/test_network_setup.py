"""Pure pieces of the private real network: image packages, prices, daemon environment."""

from __future__ import annotations

import hashlib
import tarfile
from decimal import Decimal
from pathlib import Path

import pytest

from golem_operator.realnet import network
from golem_operator.realnet.network import (
    ProviderSpec,
    RealNetworkError,
    daemon_environment,
    pack_image,
    price_arguments,
)

IMAGE = Path(__file__).resolve().parents[3] / "examples" / "images" / "simple-service"


def test_image_package_is_reproducible_and_named_by_its_sha3(tmp_path: Path) -> None:
    first = pack_image(IMAGE, tmp_path / "a.tar.gz")
    second = pack_image(IMAGE, tmp_path / "b.tar.gz")
    assert first == second == hashlib.sha3_224((tmp_path / "a.tar.gz").read_bytes()).hexdigest()
    with tarfile.open(tmp_path / "a.tar.gz") as archive:
        names = archive.getnames()
        assert "golem/run/simple_service.py" in names
        assert all(m.mtime == 0 and m.uid == 0 for m in archive.getmembers())


def test_prices_become_per_second_coefficients() -> None:
    spec = ProviderSpec(
        "p", start_price=Decimal("0.5"), per_cpu_hour=Decimal("3.6"), per_env_hour=Decimal("7.2")
    )
    assert price_arguments(spec) == ["Duration=0.002", "CPU=0.001", "Init price=0.5"]


def test_every_daemon_endpoint_is_on_loopback(tmp_path: Path) -> None:
    env = daemon_environment(tmp_path, tmp_path / "d", 7475, 7474)
    endpoints = {k: v for k, v in env.items() if "://" in v or k.endswith("_HOST")}
    assert endpoints and all("127.0.0.1" in v for v in endpoints.values()), endpoints
    assert env["YA_NET_TYPE"] == "central"
    assert env["HOLESKY_GETH_ADDR"] == f"http://127.0.0.1:{network.CHAIN_PORT}"


def test_missing_provider_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(RealNetworkError, match=r"build-yagna-provider\.sh"):
        network.check_binaries(tmp_path, tmp_path / "yagna")
