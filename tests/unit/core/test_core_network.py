"""The service's VPN as pure decisions: ordinals, addresses, host names, co-tenants on one
provider, and which networks to create, retire and delete."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from core_builders import T0, make_instance, make_spec
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from golem_operator.api.status import GolemServiceStatus, Instance, NetworkStatus
from golem_operator.api.status import InstanceState as S
from golem_operator.core import network as vpn
from golem_operator.core import transactions as tx
from golem_operator.core.images import ResolvedImage
from golem_operator.core.market import build_demand, demand_changed
from golem_operator.core.revision import revision
from golem_operator.core.scripts import compile_script

CIDR = "192.168.0.0/24"


def held(name: str, ordinal: int, state: S = S.RUNNING, **fields: Any) -> Instance:
    return make_instance(name, state, ordinal=ordinal, **fields)


def test_addresses_start_after_the_gateway() -> None:
    assert str(vpn.gateway(CIDR)) == "192.168.0.1"
    assert vpn.address(CIDR, 0) == "192.168.0.2"
    assert vpn.address(CIDR, 252) == "192.168.0.254"
    assert vpn.capacity(CIDR) == 253  # .2 to .254
    assert vpn.capacity("10.0.0.0/30") == 1
    with pytest.raises(ValueError, match="does not fit"):
        vpn.address(CIDR, 253)  # would be the broadcast address
    assert vpn.hostname("web", 3) == "web-3"


def test_the_lowest_free_ordinal_is_taken_and_a_terminated_one_is_free_again() -> None:
    instances = [held("web-1", 0), held("web-2", 2, S.STOPPING), held("web-3", 1, S.TERMINATED)]
    assert vpn.free_ordinal(instances, 10) == 1
    assert vpn.free_ordinal([*instances, held("web-4", 1, S.PENDING)], 10) == 3
    assert vpn.free_ordinal(instances, 1) is None


def test_a_replacement_takes_over_the_failed_instances_name_and_address() -> None:
    status = GolemServiceStatus()
    first = tx.add_instance(status, "web", T0)
    second = tx.add_instance(status, "web", T0)
    network = NetworkStatus(id="n1", cidr=CIDR)
    for instance in (first, second):
        assert tx.take_ordinal(instance, status.instances, vpn.capacity(CIDR))
        tx.join_network(instance, status.instances, "web", network)
    assert (first.ordinal, first.hostname, first.vpn_address) == (0, "web-0", "192.168.0.2")
    assert (second.ordinal, second.hostname, second.vpn_address) == (1, "web-1", "192.168.0.3")
    # The first fails and ends; its successor gets its ordinal, so its name and address.
    tx.mark_terminated(first, T0)
    successor = tx.add_instance(status, "web", T0)
    assert tx.take_ordinal(successor, status.instances, vpn.capacity(CIDR))
    tx.join_network(successor, status.instances, "web", network)
    assert (successor.hostname, successor.vpn_address) == ("web-0", "192.168.0.2")
    # Taking again keeps what it has.
    assert tx.take_ordinal(successor, status.instances, vpn.capacity(CIDR))
    assert successor.ordinal == 0


def test_joining_takes_a_lower_ordinal_freed_since_it_was_reserved() -> None:
    status = GolemServiceStatus()
    stopping = tx.add_instance(status, "web", T0)
    stopping.ordinal, stopping.state = 0, S.STOPPING
    replacement = tx.add_instance(status, "web", T0)
    assert tx.take_ordinal(replacement, status.instances, 10)
    assert replacement.ordinal == 1  # 0 is still held while its instance stops
    tx.mark_terminated(stopping, T0)
    tx.join_network(replacement, status.instances, "web", NetworkStatus(id="n1", cidr=CIDR))
    assert (replacement.ordinal, replacement.hostname) == (0, "web-0")


def test_take_ordinal_refuses_when_the_network_is_full() -> None:
    status = GolemServiceStatus()
    first = tx.add_instance(status, "web", T0)
    second = tx.add_instance(status, "web", T0)
    assert tx.take_ordinal(first, status.instances, 1)
    assert not tx.take_ordinal(second, status.instances, 1)
    assert second.ordinal is None


@given(st.lists(st.tuples(st.integers(0, 12), st.sampled_from(list(S))), min_size=0, max_size=12))
def test_ordinals_held_are_never_shared(entries: list[tuple[int, S]]) -> None:
    instances: list[Instance] = []
    for index, (_, state) in enumerate(entries):
        instance = make_instance(f"web-{index}", S.PENDING)
        ordinal = vpn.free_ordinal(instances, 64)
        assert ordinal is not None
        instance.ordinal = ordinal
        instance.state = state
        instances.append(instance)
    live = [i.ordinal for i in instances if vpn.holds_ordinal(i)]
    assert len(live) == len(set(live))


def test_hosts_name_every_ordinal_up_to_replicas_plus_surge_and_the_highest_held() -> None:
    assert vpn.hosts("web", CIDR, [], replicas=2, max_surge=1) == {
        "web-0": "192.168.0.2",
        "web-1": "192.168.0.3",
        "web-2": "192.168.0.4",
    }
    # After a scale-down an instance may hold a higher ordinal: it is still named.
    hosts = vpn.hosts("web", CIDR, [held("web-9", 4)], replicas=1, max_surge=1)
    assert list(hosts) == ["web-0", "web-1", "web-2", "web-3", "web-4"]
    assert hosts["web-4"] == "192.168.0.6"
    # Never beyond the network.
    assert len(vpn.hosts("web", "10.0.0.0/30", [], replicas=5, max_surge=1)) == 1


def test_shortfall_names_the_field() -> None:
    assert vpn.shortfall(CIDR, replicas=10, max_surge=3) is None
    why = vpn.shortfall("10.0.0.0/30", replicas=2, max_surge=1)
    assert why is not None and why.startswith("spec.network.cidr 10.0.0.0/30 holds 1 instance")


def test_co_tenants_are_the_other_live_instances_of_the_provider_in_the_network() -> None:
    provider = {"id": "0xp1", "name": "p1"}
    other = {"id": "0xp2", "name": "p2"}
    leaving = held("web-1", 0, S.STOPPING, provider=provider, networkId="n1")
    staying = held("web-2", 1, provider=provider, networkId="n1", vpnAddress="192.168.0.3")
    elsewhere = held("web-3", 2, provider=other, networkId="n1", vpnAddress="192.168.0.4")
    older = held("web-4", 3, provider=provider, networkId="n0", vpnAddress="10.0.0.5")
    ended = held(
        "web-5", 4, S.TERMINATED, provider=provider, networkId="n1", vpnAddress="192.168.0.6"
    )
    also_leaving = held(
        "web-6", 5, S.STOPPING, provider=provider, networkId="n1", vpnAddress="192.168.0.7"
    )
    instances = [leaving, staying, elsewhere, older, ended, also_leaving]
    assert vpn.co_tenants(instances, leaving, {"web-6"}) == [("0xp1", "192.168.0.3")]
    assert vpn.co_tenants(instances, leaving) == [
        ("0xp1", "192.168.0.3"),
        ("0xp1", "192.168.0.7"),
    ]
    # An instance that never joined has nothing to put back.
    assert vpn.co_tenants(instances, held("web-7", 6, provider=provider)) == []


NET = NetworkStatus(id="n1", cidr=CIDR)


def test_plan_creates_the_wanted_network_once() -> None:
    assert vpn.plan_network(CIDR, None, [], []) == vpn.NetworkPlan(create=CIDR)
    assert vpn.plan_network(CIDR, NET, [], []) == vpn.NetworkPlan()
    assert vpn.plan_network(None, None, [], []) == vpn.NetworkPlan()


def test_plan_retires_an_unwanted_network_and_deletes_it_once_no_instance_is_in_it() -> None:
    inside = held("web-1", 0, networkId="n1")
    assert vpn.plan_network(None, NET, [], [inside]) == vpn.NetworkPlan(retire=True)
    inside.state = S.TERMINATED
    assert vpn.plan_network(None, NET, [], [inside]) == vpn.NetworkPlan(retire=True, delete=["n1"])
    assert vpn.plan_network(None, None, [NET], [inside]) == vpn.NetworkPlan(delete=["n1"])


def test_plan_replaces_a_network_whose_cidr_changed_while_its_instances_run_on() -> None:
    inside = held("web-1", 0, networkId="n1")
    other = "10.8.0.0/16"
    assert vpn.plan_network(other, NET, [], [inside]) == vpn.NetworkPlan(retire=True, create=other)


def test_retire_and_forget_edit_the_status() -> None:
    status = GolemServiceStatus()
    tx.record_network(status, "n1", CIDR)
    tx.retire_network(status)
    tx.retire_network(status)  # nothing current: no-op
    assert status.network is None and [n.id for n in status.retired_networks] == ["n1"]
    tx.record_network(status, "n2", "10.0.0.0/24")
    tx.forget_network(status, "n1")
    assert status.retired_networks == [] and status.network is not None
    tx.forget_network(status, "n2")
    assert status.network is None
    body = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert body["retiredNetworks"] == []


def test_spec_network_is_validated_naming_the_field() -> None:
    assert make_spec(network={"cidr": CIDR}).network is not None
    for bad, words in [
        ("192.168.0.1/24", "host bits set"),
        ("192.168.0.0/31", "prefix must be /8 to /30"),
        ("192.168.0.0", "String should match pattern"),
    ]:
        with pytest.raises(ValidationError, match=words) as raised:
            make_spec(network={"cidr": bad})
        assert raised.value.errors()[0]["loc"] == ("network", "cidr")


def test_the_network_is_part_of_the_revision_only_when_set() -> None:
    plain = make_spec()
    with_network = make_spec(network={"cidr": CIDR})
    assert revision(plain) != revision(with_network)
    assert revision(with_network) != revision(make_spec(network={"cidr": "10.0.0.0/24"}))
    # Without a network the revision is what it was before networks existed.
    before = plain.model_dump(
        by_alias=True, mode="json", include={"payload", "lifecycle", "market"}
    )
    text = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert revision(plain) == hashlib.sha256(text.encode()).hexdigest()[:10]


def test_the_deploy_command_carries_the_vpn_body() -> None:
    script = make_spec().lifecycle.start.full_script()
    body = {"net": [{"id": "n1", "nodeIp": "192.168.0.2"}], "hosts": {"web-0": "192.168.0.2"}}
    batch = compile_script(script, deploy=body)
    assert batch.commands[0] == {"deploy": body}
    assert compile_script(script).commands[0] == {"deploy": {}}


def test_a_service_with_a_network_asks_for_providers_that_join_vpns() -> None:
    plain = make_spec()
    with_network = make_spec(network={"cidr": CIDR})
    constraint = "(golem.runtime.capabilities=vpn)"
    assert constraint in demand_of(with_network).constraints
    assert constraint not in demand_of(plain).constraints
    # Asked once, also when the payload names it already.
    named = make_spec(
        network={"cidr": CIDR}, payload={"image": {"tag": "a/b:c"}, "capabilities": ["vpn"]}
    )
    assert demand_of(named).constraints.count(constraint) == 1
    # Adding or removing the network changes what the demand says; another cidr does not.
    assert demand_changed(plain, with_network)
    assert not demand_changed(with_network, make_spec(network={"cidr": "10.0.0.0/16"}))


def demand_of(spec: Any) -> Any:
    image = ResolvedImage(hash="a" * 56, url="http://127.0.0.1/image")
    return build_demand(spec, image=image, now=T0, node_name="ns/web")
