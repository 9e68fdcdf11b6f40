"""Demand building and offer choice: the daemon's demand shape, LDAP constraints, caps, lists."""

from __future__ import annotations

import fnmatch
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from core_builders import IMAGE_HASH, T0, make_spec, offer_properties
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.core.images import ResolvedImage
from golem_operator.core.market import (
    EXPIRATION_SLACK,
    Choice,
    OfferView,
    Refusal,
    avoided_providers,
    build_demand,
    choose_offers,
    evaluate_offer,
    next_instance_cost,
    price_caps,
)
from golem_operator.core.payments import LinearPrice, PriceCaps

D = Decimal
ADDRESS = "0x" + "12" * 20
IMAGE_URL = "http://127.0.0.1:8000/download/" + IMAGE_HASH
IMAGE = ResolvedImage(IMAGE_HASH, IMAGE_URL)

# --- a small LDAP filter reader, to check the constraints' shape and meaning ------------------

Node = tuple[str, Any]  # ("&"|"|", [nodes]) / ("!", node) / ("cmp", (name, op, value))
_ITEM = re.compile(r"([^()=<>!&|*\s][^()=<>]*?)(>=|<=|=|<|>)([^()]*)")


def parse_ldap(text: str) -> Node:
    node, end = _parse(text, 0)
    assert end == len(text), f"trailing text after position {end}: {text!r}"
    return node


def _parse(text: str, pos: int) -> tuple[Node, int]:
    assert text[pos] == "(", f"expected ( at {pos} in {text!r}"
    pos += 1
    if text[pos] in "&|":
        op, pos, operands = text[pos], pos + 1, []
        while text[pos] == "(":
            child, pos = _parse(text, pos)
            operands.append(child)
        assert operands, f"empty {op} in {text!r}"
        node: Node = (op, operands)
    elif text[pos] == "!":
        child, pos = _parse(text, pos + 1)
        node = ("!", child)
    else:
        close = text.index(")", pos)
        match = _ITEM.fullmatch(text[pos:close])
        assert match, f"not a comparison: {text[pos:close]!r}"
        node, pos = ("cmp", match.groups()), close
    assert text[pos] == ")", f"expected ) at {pos} in {text!r}"
    return node, pos + 1


def matches(node: Node, props: dict[str, Any]) -> bool:
    kind, body = node
    if kind == "&":
        return all(matches(n, props) for n in body)
    if kind == "|":
        return any(matches(n, props) for n in body)
    if kind == "!":
        return not matches(body, props)
    name, op, value = body
    if name not in props:
        return False
    values = props[name] if isinstance(props[name], list) else [props[name]]
    for have in values:
        if op == "=":
            if value == "*" or fnmatch.fnmatchcase(str(have).lower(), value.lower()):
                return True
        elif isinstance(have, int | float) and not isinstance(have, bool):
            want = float(value)
            ok = {">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want}
            if ok[op]:
                return True
    return False


def operands(constraints: str) -> list[str]:
    """The top-level clauses of an (&…) filter, as text."""
    kind, body = parse_ldap(constraints)
    assert kind == "&"
    out, depth, start = [], 0, 2
    for k, ch in enumerate(constraints[2:-1], start=2):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            out.append(constraints[start : k + 1])
            start = k + 1
    assert len(out) == len(body)
    return out


def test_the_ldap_reader_itself() -> None:
    tree = parse_ldap("(&(a>=1)(|(b=x*)(c=*))(!(d=2)))")
    assert matches(tree, {"a": 2, "b": "xy"}) and not matches(tree, {"a": 0, "b": "xy"})
    assert not matches(tree, {"a": 2, "c": 1, "d": 2})
    for bad in ["(a=1", "(&(a=1)", "a=1", "(&)", "(a=1))", "((a=1)"]:
        with pytest.raises((AssertionError, IndexError, ValueError)):
            parse_ldap(bad)


# --- build_demand -----------------------------------------------------------------------------

REFERENCE_PROPERTIES = {
    "golem.node.id.name",
    "golem.node.debug.subnet",
    "golem.srv.comp.expiration",
    "golem.srv.comp.task_package",
    "golem.srv.comp.vm.package_format",
    "golem.com.payment.debit-notes.accept-timeout?",
    "golem.com.payment.chosen-platform",
    "golem.com.payment.platform.erc20-holesky-tglm.address",
    "golem.com.scheme.payu.debit-note.interval-sec?",
    "golem.com.scheme.payu.payment-timeout-sec?",
}
REFERENCE_CONSTRAINTS = [
    "(golem.inf.mem.gib>=0.5)",
    "(golem.inf.storage.gib>=2.0)",
    "(golem.runtime.name=vm)",
    "(golem.node.debug.subnet=public)",
    "(golem.com.payment.platform.erc20-holesky-tglm.address=*)",
    "(golem.com.pricing.model=linear)",
]


def demand(spec: GolemServiceSpec | None = None, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "now": T0,
        "node_name": "ns.web",
        "requestor_address": ADDRESS,
        "image": IMAGE,
    }
    options.update(kwargs)
    return build_demand(spec or make_spec(), **options)


def test_demand_properties_are_the_ones_the_daemon_accepted() -> None:
    props = demand().properties
    assert set(props) == REFERENCE_PROPERTIES
    assert props["golem.node.id.name"] == "ns.web"
    assert props["golem.node.debug.subnet"] == "public"
    # agreementDuration plus the slack for the provider checking it a moment later.
    expected_end = T0 + timedelta(hours=1) + EXPIRATION_SLACK
    assert props["golem.srv.comp.expiration"] == int(expected_end.timestamp()) * 1000
    # The only form a provider's exe-unit deploys: hash, then the URL it downloads.
    assert props["golem.srv.comp.task_package"] == f"hash:sha3:{IMAGE_HASH}:{IMAGE_URL}"
    assert props["golem.srv.comp.vm.package_format"] == "gvmkit-squash"
    assert props["golem.com.payment.debit-notes.accept-timeout?"] == 240
    assert props["golem.com.payment.chosen-platform"] == "erc20-holesky-tglm"
    assert props["golem.com.payment.platform.erc20-holesky-tglm.address"] == ADDRESS
    assert props["golem.com.scheme.payu.debit-note.interval-sec?"] == 120
    assert props["golem.com.scheme.payu.payment-timeout-sec?"] == 600


def test_demand_constraints_hold_the_reference_clauses() -> None:
    clauses = operands(demand().constraints)
    for clause in [*REFERENCE_CONSTRAINTS, "(golem.inf.cpu.threads>=1)"]:
        assert clause in clauses


def test_the_default_demand_matches_a_real_offer_and_not_a_poorer_one() -> None:
    tree = parse_ldap(demand().constraints)
    offer = offer_properties([0.0001, 0.00002, 0.05])
    assert matches(tree, offer)
    for key, value in [
        ("golem.inf.mem.gib", 0.25),
        ("golem.inf.storage.gib", 1.0),
        ("golem.runtime.name", "wasmtime"),
        ("golem.node.debug.subnet", "private"),
        ("golem.com.pricing.model", "fixed"),
    ]:
        assert not matches(tree, {**offer, key: value}), key
    no_address = {k: v for k, v in offer.items() if "platform.erc20-holesky-tglm" not in k}
    assert not matches(tree, no_address)


def test_spec_values_flow_into_the_demand() -> None:
    spec = make_spec(
        payload={
            "image": {"hash": "sha3:" + IMAGE_HASH},
            "minMemGib": 4,
            "minStorageGib": 20.5,
            "minCpuThreads": 8,
            "capabilities": ["vpn", "inet"],
        },
        agreementDuration="1h30m",
        market={
            "subnetTag": "devnet-beta",
            "payment": {"network": "polygon"},
            "debitNoteIntervalSeconds": 60,
            "paymentTimeoutSeconds": 3600,
        },
    )
    result = demand(spec, now=T0)
    props, clauses = result.properties, operands(result.constraints)
    assert props["golem.srv.comp.task_package"] == IMAGE.task_package
    slack = EXPIRATION_SLACK.total_seconds()
    assert props["golem.srv.comp.expiration"] == int(T0.timestamp() + 5400 + slack) * 1000
    assert props["golem.node.debug.subnet"] == "devnet-beta"
    assert props["golem.com.payment.chosen-platform"] == "erc20-polygon-glm"
    assert props["golem.com.payment.platform.erc20-polygon-glm.address"] == ADDRESS
    assert props["golem.com.scheme.payu.debit-note.interval-sec?"] == 60
    assert props["golem.com.scheme.payu.payment-timeout-sec?"] == 3600
    assert props["golem.srv.comp.vm.capabilities"] == ["vpn", "inet"]
    for clause in [
        "(golem.inf.mem.gib>=4.0)",
        "(golem.inf.storage.gib>=20.5)",
        "(golem.inf.cpu.threads>=8)",
        "(golem.node.debug.subnet=devnet-beta)",
        "(golem.com.payment.platform.erc20-polygon-glm.address=*)",
        "(golem.runtime.capabilities=vpn)",
        "(golem.runtime.capabilities=inet)",
    ]:
        assert clause in clauses
    assert not any("holesky" in c for c in clauses)
    offer = {
        **offer_properties([0, 0, 0], threads=8),
        "golem.inf.mem.gib": 4.0,
        "golem.inf.storage.gib": 21.0,
        "golem.node.debug.subnet": "devnet-beta",
        "golem.runtime.capabilities": ["vpn", "inet", "manifest-support"],
        "golem.com.payment.platform.erc20-polygon-glm.address": "0x" + "cd" * 20,
    }
    tree = parse_ldap(result.constraints)
    assert matches(tree, offer)
    assert not matches(tree, {**offer, "golem.runtime.capabilities": ["vpn"]})
    assert not matches(tree, {**offer, "golem.inf.cpu.threads": 7})


def test_no_address_property_without_a_requestor_address() -> None:
    props = demand(requestor_address=None).properties
    assert not any(k.startswith("golem.com.payment.platform.") for k in props)
    # The provider still has to accept the platform.
    assert (
        "(golem.com.payment.platform.erc20-holesky-tglm.address=*)"
        in demand(requestor_address=None).constraints
    )


def test_extra_properties_and_constraints_are_merged() -> None:
    spec = make_spec(
        payload={
            "image": {"hash": IMAGE_HASH},
            "properties": {"golem.node.debug.x": 7, "golem.srv.comp.vm.package_format": "custom"},
            "constraints": ["(golem.inf.cpu.architecture=x86_64)", "(|(a=1)(b=2))"],
        }
    )
    decorations = (
        {"golem.srv.comp.manifest": "e30="},
        ["(golem.runtime.name=vm)", "(golem.srv.caps.payload-manifest=true)"],
    )
    result = demand(spec, decorations=decorations)
    props, clauses = result.properties, operands(result.constraints)
    assert props["golem.node.debug.x"] == 7
    assert props["golem.srv.comp.vm.package_format"] == "custom"  # the user's word wins
    assert props["golem.srv.comp.manifest"] == "e30="
    assert set(props) >= REFERENCE_PROPERTIES
    assert clauses.count("(golem.runtime.name=vm)") == 1  # decoration duplicates dropped
    for clause in [
        "(golem.srv.caps.payload-manifest=true)",
        "(golem.inf.cpu.architecture=x86_64)",
        "(|(a=1)(b=2))",
        *REFERENCE_CONSTRAINTS,
    ]:
        assert clause in clauses


@settings(max_examples=100, deadline=None)
@given(
    caps=st.lists(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), max_size=4, unique=True),
    subnet=st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
    mem=st.floats(min_value=0, max_value=4096),
    extra=st.lists(
        st.sampled_from(["(x=1)", "(|(y>=2)(z=*))", "(!(w=a*b))", "(&(p<3)(q>4))"]), max_size=4
    ),
)
def test_constraints_always_parse(
    caps: list[str], subnet: str, mem: float, extra: list[str]
) -> None:
    spec = make_spec(
        payload={
            "image": {"tag": "golem/x:1"},
            "capabilities": caps,
            "minMemGib": mem,
            "constraints": extra,
        },
        market={"subnetTag": subnet},
    )
    text = demand(spec).constraints
    assert text.count("(") == text.count(")")
    clauses = operands(text)
    assert f"(golem.node.debug.subnet={subnet})" in clauses
    assert len(clauses) == 7 + len(caps) + len(extra)


# --- caps, costs, avoided providers -----------------------------------------------------------


def test_price_caps_come_from_the_market() -> None:
    assert price_caps(make_spec()) == PriceCaps(None, None, None)
    spec = make_spec(market={"maxStartPrice": "0.5", "maxCpuPerHour": "1.25"})
    assert price_caps(spec) == PriceCaps(D("0.5"), D("1.25"), None)


def test_next_instance_cost_from_the_caps() -> None:
    spec = make_spec(
        payload={"image": {"hash": IMAGE_HASH}, "minCpuThreads": 2},
        agreementDuration="2h",
        market={"maxStartPrice": "0.5", "maxCpuPerHour": "0.36", "maxEnvPerHour": "0.1"},
    )
    # 0.5 + (2 h + the 30 s expiration slack) * (0.1 + 0.36 * 2 threads), per second
    seconds = 2 * 3600 + 30
    assert next_instance_cost(spec, D(99)) == D("0.5") + (D("0.1") + 2 * D("0.36")) / 3600 * seconds


def test_next_instance_cost_without_every_cap_uses_the_cheapest_offer_seen() -> None:
    spec = make_spec(market={"maxStartPrice": "0.5", "maxCpuPerHour": "0.36"})
    assert next_instance_cost(spec, D("1.7")) == D("1.7")
    assert next_instance_cost(spec, None) == 0


def test_avoided_providers_expire() -> None:
    avoided = {
        "0xa": (T0 + timedelta(minutes=5)).isoformat(),
        "0xb": (T0 - timedelta(seconds=1)).isoformat(),
        "0xc": T0.isoformat(),
    }
    assert avoided_providers(avoided, T0) == {"0xa"}
    assert avoided_providers(avoided, T0 + timedelta(minutes=6)) == set()


# --- choose_offers ----------------------------------------------------------------------------


def offer(pid: str, name: str, coeffs: list[Any], proposal: str | None = None) -> OfferView:
    props = offer_properties(coeffs, threads=2, extra={"golem.node.id.name": name})
    return OfferView(proposal or f"prop-{pid}", pid, name, props)


def reasons(refused: list[Refusal]) -> dict[str, str]:
    return {r.offer.provider_id: r.reason for r in refused}


def test_cheapest_first_by_the_most_the_agreement_could_cost() -> None:
    spec = make_spec()  # 1 h agreements, billed up to 3630 s (the expiration slack)
    cheap_start = offer("0x1", "a", [0.001, 0.0001, 5.0])  # 5 + 3630 * (0.0001 + 2 * 0.001)
    cheap_run = offer("0x2", "b", [0.0001, 0.0001, 0.1])  # 0.1 + 3630 * 0.0003 = 1.189
    free = offer("0x3", "c", [0, 0, 0])
    chosen, refused = choose_offers([cheap_start, cheap_run, free], spec, avoided=set())
    assert refused == []
    assert [c.offer.provider_id for c in chosen] == ["0x3", "0x2", "0x1"]
    assert [c.max_cost for c in chosen] == [D(0), D("1.189"), D("12.623")]
    assert chosen[1].price == LinearPrice(D("0.1"), D("0.0001"), D("0.0001"), 2)


def test_ties_are_broken_by_name_then_proposal() -> None:
    same = [0.0001, 0.0001, 0.1]
    offers = [
        offer("0x1", "zeta", same, "p2"),
        offer("0x2", "alpha", same, "p9"),
        offer("0x3", "alpha", same, "p1"),
    ]
    chosen, _ = choose_offers(offers, make_spec(), avoided=set())
    assert [c.offer.proposal_id for c in chosen] == ["p1", "p9", "p2"]


@pytest.mark.parametrize("key", ["0x2", "bob"])
def test_allow_list_by_id_or_name(key: str) -> None:
    spec = make_spec(market={"providers": {"allow": [key]}})
    offers = [offer("0x1", "alice", [0, 0, 0]), offer("0x2", "bob", [0, 0, 0])]
    chosen, refused = choose_offers(offers, spec, avoided=set())
    assert [c.offer.provider_id for c in chosen] == ["0x2"]
    assert "allow" in reasons(refused)["0x1"]


@pytest.mark.parametrize("key", ["0x2", "bob"])
def test_deny_list_by_id_or_name(key: str) -> None:
    spec = make_spec(market={"providers": {"deny": [key]}})
    offers = [offer("0x1", "alice", [0, 0, 0]), offer("0x2", "bob", [0, 0, 0])]
    chosen, refused = choose_offers(offers, spec, avoided=set())
    assert [c.offer.provider_id for c in chosen] == ["0x1"]
    assert "deny" in reasons(refused)["0x2"]


def test_avoided_providers_are_refused_by_id() -> None:
    offers = [offer("0x1", "alice", [0, 0, 0]), offer("0x2", "bob", [0, 0, 0])]
    chosen, refused = choose_offers(offers, make_spec(), avoided={"0x1"})
    assert [c.offer.provider_id for c in chosen] == ["0x2"]
    assert "failed recently" in reasons(refused)["0x1"]


def test_caps_refuse_with_the_cap_named() -> None:
    spec = make_spec(
        market={"maxStartPrice": "0.5", "maxCpuPerHour": "0.36", "maxEnvPerHour": "0.36"}
    )
    offers = [
        offer("0x1", "ok", [0.0001, 0.0001, 0.5]),  # exactly at every cap
        offer("0x2", "start", [0, 0, 0.51]),
        offer("0x3", "cpu", [0.00011, 0, 0]),
        offer("0x4", "env", [0, 0.00011, 0]),
    ]
    chosen, refused = choose_offers(offers, spec, avoided=set())
    assert [c.offer.provider_id for c in chosen] == ["0x1"]
    why = reasons(refused)
    assert "maxStartPrice" in why["0x2"]
    assert "maxCpuPerHour" in why["0x3"]
    assert "maxEnvPerHour" in why["0x4"]


def test_unusable_pricing_is_refused_not_raised() -> None:
    bad = offer("0x1", "bad", [0.1, "x", 0.3])
    short = offer("0x2", "short", [0.1])
    verdict = evaluate_offer(bad, make_spec(), avoided=set())
    assert isinstance(verdict, Refusal) and "unusable pricing" in verdict.reason
    chosen, refused = choose_offers([bad, short], make_spec(), avoided=set())
    assert chosen == [] and set(reasons(refused)) == {"0x1", "0x2"}


def test_the_first_failing_rule_gives_the_reason() -> None:
    spec = make_spec(market={"providers": {"deny": ["0x1"]}, "maxStartPrice": "0.1"})
    # Denied, avoided and too expensive: the deny list is what the user will recognise.
    verdict = evaluate_offer(offer("0x1", "x", [0, 0, 5]), spec, avoided={"0x1"})
    assert isinstance(verdict, Refusal) and "deny" in verdict.reason


@settings(max_examples=100, deadline=None)
@given(
    prices=st.lists(
        st.tuples(*[st.decimals(0, 1, places=6) for _ in range(3)]), min_size=0, max_size=8
    ),
    avoid=st.sets(st.integers(0, 7)),
)
def test_every_offer_is_either_chosen_or_refused(
    prices: list[tuple[Decimal, Decimal, Decimal]], avoid: set[int]
) -> None:
    offers = [offer(f"0x{k}", f"n{k}", [str(c) for c in p]) for k, p in enumerate(prices)]
    spec = make_spec(market={"maxStartPrice": "0.5"})
    chosen, refused = choose_offers(offers, spec, avoided={f"0x{k}" for k in avoid})
    assert len(chosen) + len(refused) == len(offers)
    costs = [c.max_cost for c in chosen]
    assert costs == sorted(costs)
    for choice in chosen:
        assert isinstance(choice, Choice)
        assert choice.price.start <= D("0.5")
        assert choice.offer.provider_id not in {f"0x{k}" for k in avoid}
        assert choice.max_cost == choice.price.max_cost(D(3630))
