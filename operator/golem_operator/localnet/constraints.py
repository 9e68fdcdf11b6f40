"""Golem market constraints: parse LDAP-style filters and match them against properties.

Pure functions used by the localnet market (`localnet.market`) to match demands with offers
in both directions. Grammar: ``(&(a>=1)(b=x)(c=*)(|(d=1)(d=2))(!(e=y)))``; ``=`` accepts
``*`` wildcards, ``=*`` is presence; ``<``, ``<=``, ``>``, ``>=`` compare numbers (or strings).
A property that is missing never satisfies a comparison (so ``(!(x=1))`` holds when x is absent).
List-valued properties match when any element matches.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_Ordered = TypeVar("_Ordered", float, str)


class ConstraintError(ValueError):
    """The constraint expression cannot be parsed."""


@dataclass(frozen=True)
class Comparison:
    name: str
    operator: str
    value: str


@dataclass(frozen=True)
class Combination:
    operator: str  # "&", "|" or "!"
    operands: tuple[Expression, ...]


Expression = Comparison | Combination


def flatten_properties(properties: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested property objects become the flat dotted convention yagna uses."""
    flat: dict[str, Any] = {}
    for key, value in properties.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_properties(value, name))
        else:
            flat[name] = value
    return flat


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _expect(self, char: str) -> None:
        self._skip_space()
        if self.pos >= len(self.text) or self.text[self.pos] != char:
            raise ConstraintError(f"expected {char!r} at position {self.pos} in {self.text!r}")
        self.pos += 1

    def parse(self) -> Expression:
        expression = self._expression()
        self._skip_space()
        if self.pos != len(self.text):
            raise ConstraintError(f"unexpected text at position {self.pos} in {self.text!r}")
        return expression

    def _expression(self) -> Expression:
        self._expect("(")
        self._skip_space()
        if self.pos < len(self.text) and self.text[self.pos] in "&|!":
            operator = self.text[self.pos]
            self.pos += 1
            operands: list[Expression] = []
            while True:
                self._skip_space()
                if self.pos < len(self.text) and self.text[self.pos] == "(":
                    operands.append(self._expression())
                else:
                    break
            self._expect(")")
            if operator == "!" and len(operands) != 1:
                raise ConstraintError(f"'!' takes exactly one operand in {self.text!r}")
            return Combination(operator, tuple(operands))
        return self._comparison()

    def _comparison(self) -> Comparison:
        depth_end = self.text.find(")", self.pos)
        if depth_end < 0:
            raise ConstraintError(f"unterminated comparison in {self.text!r}")
        body = self.text[self.pos : depth_end]
        self.pos = depth_end + 1
        index = next((i for i, char in enumerate(body) if char in "<>="), -1)
        if index > 0:
            operator = body[index]
            if operator in "<>" and body[index + 1 : index + 2] == "=":
                operator += "="
            name = body[:index].strip()
            value = body[index + len(operator) :].strip()
            return Comparison(name, operator, value)
        raise ConstraintError(f"no operator in ({body}) of {self.text!r}")


def parse_constraints(text: str) -> Expression | None:
    """The parsed expression, or None for an empty constraint (matches everything)."""
    stripped = text.strip()
    if not stripped:
        return None
    return _Parser(stripped).parse()


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _scalar_matches(actual: Any, operator: str, expected: str) -> bool:
    if operator == "=":
        if expected == "*":
            return True
        if isinstance(actual, bool):
            return expected.lower() == str(actual).lower()
        actual_number, expected_number = _as_number(actual), _as_number(expected)
        if actual_number is not None and expected_number is not None:
            return actual_number == expected_number
        if "*" in expected:
            return fnmatch.fnmatchcase(str(actual), expected.replace("[", "[[]"))
        return str(actual) == expected
    actual_number, expected_number = _as_number(actual), _as_number(expected)
    if actual_number is not None and expected_number is not None:
        return _ordered(actual_number, operator, expected_number)
    return _ordered(str(actual), operator, expected)


def _ordered(left: _Ordered, operator: str, right: _Ordered) -> bool:
    if operator == "<":
        return left < right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left >= right


def _lookup(properties: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    for key in (name, f"{name}?", name.removesuffix("?")):
        if key in properties:
            return True, properties[key]
    return False, None


def evaluate(expression: Expression | None, properties: Mapping[str, Any]) -> bool:
    """True when the (flat) properties satisfy the expression."""
    if expression is None:
        return True
    if isinstance(expression, Combination):
        if expression.operator == "&":
            return all(evaluate(e, properties) for e in expression.operands)
        if expression.operator == "|":
            return any(evaluate(e, properties) for e in expression.operands)
        return not evaluate(expression.operands[0], properties)
    found, actual = _lookup(properties, expression.name)
    if not found or actual is None:
        return False
    values = actual if isinstance(actual, list) else [actual]
    return any(_scalar_matches(v, expression.operator, expression.value) for v in values)


def matches(constraints: str, properties: Mapping[str, Any]) -> bool:
    """Parse and evaluate; raises ConstraintError for a malformed expression."""
    return evaluate(parse_constraints(constraints), flatten_properties(properties))
