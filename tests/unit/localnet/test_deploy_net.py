"""The localnet exe-unit's reading of a deploy command's `net` entries."""

from __future__ import annotations

import ipaddress

import pytest

from golem_operator.localnet.vpn import parse_deploy_net


def entry(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "df4ed1ae3de94cfb8c14a7c92f22c34a",
        "ip": "192.168.8.0",
        "mask": "255.255.255.0",
        "gateway": "192.168.8.1",
        "nodeIp": "192.168.8.2",
        "nodes": {"192.168.8.2": "0x" + "ab" * 20},
    }
    base.update(overrides)
    return base


def test_sdk_entries_are_accepted() -> None:
    (parsed,) = parse_deploy_net({"net": [entry()]})
    assert parsed.network_id == "df4ed1ae3de94cfb8c14a7c92f22c34a"
    assert parsed.node_ip == ipaddress.IPv4Address("192.168.8.2")
    assert parsed.network == ipaddress.IPv4Network("192.168.8.0/24")
    # yagna's own form of the ip (with its prefix) and a missing mask both work.
    (prefixed,) = parse_deploy_net({"net": [entry(ip="192.168.8.0/24", mask=None)]})
    assert prefixed.network == ipaddress.IPv4Network("192.168.8.0/24")
    assert parse_deploy_net({}) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"net": {}}, "deploy.net must be a list"),
        ({"net": ["x"]}, r"deploy.net\[0\] must be an object"),
        ({"net": [entry(id="")]}, r"deploy.net\[0\].id"),
        ({"net": [entry(nodeIp="nope")]}, r"deploy.net\[0\].nodeIp must be an IPv4 address"),
        ({"net": [entry(nodeIp="192.168.9.2")]}, "is outside 192.168.8.0/24"),
        ({"net": [entry(mask="garbage")]}, r"deploy.net\[0\].ip/mask"),
        ({"net": [entry(nodes=[])]}, r"deploy.net\[0\].nodes"),
    ],
)
def test_bad_entries_name_the_field(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_deploy_net(bad)
