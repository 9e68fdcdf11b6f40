"""Constraint parsing and matching of the local network's market."""

from __future__ import annotations

import pytest

from golem_operator.localnet.constraints import (
    Combination,
    Comparison,
    ConstraintError,
    matches,
    parse_constraints,
)

OFFER = {
    "golem.inf.mem.gib": 4.0,
    "golem.inf.cpu.threads": 2,
    "golem.runtime.name": "vm",
    "golem.node.debug.subnet": "localnet",
    "golem.com.payment.platform.erc20-holesky-tglm.address": "0xabc",
    "golem.runtime.capabilities": ["vpn", "inet"],
    "golem.srv.caps.multi-activity": True,
}


def test_parses_nested_expressions() -> None:
    parsed = parse_constraints("(&(a>=1)(b=x)(|(c<2)(d<=3))(!(e>4)))")
    assert parsed == Combination(
        "&",
        (
            Comparison("a", ">=", "1"),
            Comparison("b", "=", "x"),
            Combination("|", (Comparison("c", "<", "2"), Comparison("d", "<=", "3"))),
            Combination("!", (Comparison("e", ">", "4"),)),
        ),
    )


def test_value_may_contain_operators() -> None:
    parsed = parse_constraints("(golem.srv.comp.task_package=hash:sha3:ab:http://x/y?a=b)")
    assert parsed == Comparison("golem.srv.comp.task_package", "=", "hash:sha3:ab:http://x/y?a=b")


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ("(golem.inf.mem.gib>=0.5)", True),
        ("(golem.inf.mem.gib>=8)", False),
        ("(golem.inf.mem.gib<4)", False),
        ("(golem.inf.mem.gib<=4)", True),
        ("(golem.inf.cpu.threads>1)", True),
        ("(golem.runtime.name=vm)", True),
        ("(golem.runtime.name=wasm)", False),
        ("(golem.node.debug.subnet=local*)", True),
        ("(golem.node.debug.subnet=*net)", True),
        ("(golem.node.debug.subnet=devnet*)", False),
        ("(golem.com.payment.platform.erc20-holesky-tglm.address=*)", True),
        ("(golem.com.payment.platform.erc20-polygon-glm.address=*)", False),
        ("(golem.runtime.capabilities=inet)", True),
        ("(golem.runtime.capabilities=gpu)", False),
        ("(golem.srv.caps.multi-activity=true)", True),
        ("(!(golem.missing=1))", True),
        ("(golem.missing<5)", False),
        ("(|(golem.runtime.name=wasm)(golem.inf.mem.gib>2))", True),
        ("(&(golem.runtime.name=vm)(golem.inf.mem.gib>200))", False),
        (
            "(&(golem.inf.mem.gib>=0.5)(golem.runtime.name=vm)(!(golem.node.debug.subnet=public)))",
            True,
        ),
        ("", True),
    ],
)
def test_matching(constraint: str, expected: bool) -> None:
    assert matches(constraint, OFFER) is expected


def test_nested_property_objects_are_flattened() -> None:
    assert matches("(golem.inf.mem.gib>=2)", {"golem": {"inf": {"mem": {"gib": 3}}}})


def test_optional_marker_in_property_names() -> None:
    props = {"golem.com.scheme.payu.debit-note.interval-sec?": 120}
    assert matches("(golem.com.scheme.payu.debit-note.interval-sec>=60)", props)


@pytest.mark.parametrize("bad", ["(&(a=1)", "(a)", "a=1", "(!(a=1)(b=2))", "(&(a=1)))"])
def test_malformed_constraints_raise(bad: str) -> None:
    with pytest.raises(ConstraintError):
        parse_constraints(bad)
