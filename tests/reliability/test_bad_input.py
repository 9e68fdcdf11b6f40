"""Invalid GolemService manifests are refused at admission, and the message names the field.

Hypothesis mutates examples/full.yaml — wrong types, numbers out of range, strings that break
their pattern or length (up to a megabyte), too many items, enum values that do not exist,
unknown fields and commands, missing required fields, two image references, cross-field
rules — guided by the CRD's own schema, and sends each to the real kube-apiserver as a
server-side dry run (fast: nothing is stored). Each must be refused with the mutated field's
path in the message. The unmutated manifest is accepted (so refusals come from the mutations).
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_operator import constants
from golem_operator.devenv.controlplane import ADMIN_TOKEN, ControlPlane

ROOT = Path(__file__).resolve().parents[2]
Path_ = tuple[str | int, ...]


def example() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "full.yaml").read_text()))
    doc: dict[str, Any] = next(d for d in docs if d["kind"] == constants.KIND)
    return doc


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "golemservices.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]


def nodes(value: Any, schema: dict[str, Any], path: Path_) -> Iterator[tuple[Path_, Any, dict]]:
    """Every node of the example with its schema (free-form properties left out)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    yield path, value, schema
    if isinstance(value, dict):
        for key, child in value.items():
            sub = schema.get("properties", {}).get(key)
            if sub is not None:
                yield from nodes(child, sub, (*path, key))
    elif isinstance(value, list) and "items" in schema:
        for index, child in enumerate(value):
            yield from nodes(child, schema["items"], (*path, index))


def field_path(path: Path_) -> str:
    """spec.lifecycle.start.commands[2].run as the API server writes it."""
    text = "spec"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def set_at(doc: dict[str, Any], path: Path_, value: Any) -> None:
    target: Any = doc["spec"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def delete_at(doc: dict[str, Any], path: Path_) -> None:
    target: Any = doc["spec"]
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]


ASCII = st.characters(min_codepoint=32, max_codepoint=126)
WRONG_FOR = {
    "string": st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)),
    "integer": st.one_of(
        st.text(ASCII, min_size=1, max_size=8),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
        st.booleans(),
    ),
    "number": st.one_of(st.text(ASCII, min_size=1, max_size=8), st.booleans(), st.just([])),
    "boolean": st.one_of(st.text(ASCII, min_size=1, max_size=8), st.integers()),
    "object": st.one_of(st.text(ASCII, max_size=8), st.integers(), st.just([1])),
    "array": st.one_of(st.text(ASCII, max_size=8), st.integers(), st.just({"a": 1})),
}
NODES = list(nodes(example()["spec"], spec_schema(), ()))


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """(manifest, the field path the refusal must name, what was done)."""
    doc = example()
    path, value, schema = draw(st.sampled_from(NODES[1:]))
    kind = schema.get("type", "object")
    options = ["wrong type"]
    if "minimum" in schema or "maximum" in schema:
        options.append("out of range")
    if "pattern" in schema:
        options.append("bad pattern")
    if "maxLength" in schema:
        options.append("too long")
    if "maxItems" in schema and value:
        options.append("too many items")
    if "enum" in schema:
        options.append("not in enum")
    if kind == "object" and schema.get("properties"):
        options.append("unknown field")
    parent_schema = next(s for p, _, s in NODES if p == path[:-1])
    if isinstance(path[-1], str) and path[-1] in parent_schema.get("required", []):
        options.append("required field removed")
    what = draw(st.sampled_from(options))
    where = field_path(path)
    if what == "wrong type":
        set_at(doc, path, draw(WRONG_FOR[kind]))
    elif what == "out of range":
        low, high = schema.get("minimum"), schema.get("maximum")
        candidates = []
        if low is not None:
            candidates.append(low - draw(st.integers(1, 10**9)))
        if high is not None:
            candidates.append(high + draw(st.integers(1, 10**9)))
        set_at(doc, path, draw(st.sampled_from(candidates)))
    elif what == "bad pattern":
        pattern = re.compile(schema["pattern"])
        bad = draw(st.text(ASCII, max_size=40).filter(lambda s: pattern.search(s) is None))
        set_at(doc, path, bad)
    elif what == "too long":
        extra = draw(st.sampled_from([1, 7, 1_000_000 - schema["maxLength"]]))
        set_at(doc, path, "/" + "x" * (schema["maxLength"] + extra))
    elif what == "too many items":
        set_at(doc, path, list(value) * (schema["maxItems"] // len(value) + 1))
    elif what == "not in enum":
        enum = schema["enum"]
        set_at(doc, path, draw(st.text(ASCII, max_size=12).filter(lambda s: s not in enum)))
    elif what == "unknown field":
        key = "bogus" + draw(st.text("abcdefgh", min_size=1, max_size=6))
        set_at(doc, path, {**value, key: draw(st.one_of(st.integers(), st.text(ASCII)))})
        where = f"{where}.{key}"
    else:
        delete_at(doc, path)
        where = f"{field_path(path[:-1])}.{path[-1]}"
    return doc, where, f"{what} at {field_path(path)}"


#: Rules across fields (CEL) and shapes the per-field mutations above do not produce.
CROSS_FIELD: list[tuple[str, Any, str]] = [
    (
        "two image references",
        lambda s: s["payload"]["image"].update(hash="a" * 56),
        "spec.payload.image",
    ),
    ("no image reference", lambda s: s["payload"].update(image={}), "spec.payload.image"),
    (
        "unknown command",
        lambda s: s["lifecycle"]["run"]["commands"].append({"exec": {"cmd": "rm -rf /"}}),
        "spec.lifecycle.run.commands[2].exec",
    ),
    (
        "a command with two actions",
        lambda s: s["lifecycle"]["run"]["commands"][0].update(terminate={}),
        "spec.lifecycle.run.commands[0]",
    ),
    (
        "deploy not first",
        lambda s: s["lifecycle"]["start"]["commands"].append({"deploy": {}}),
        "spec.lifecycle.start.commands",
    ),
    (
        "upload with two sources",
        lambda s: s["lifecycle"]["start"]["commands"][1]["upload"]["source"].update(
            secretKeyRef={"name": "x", "key": "y"}
        ),
        "spec.lifecycle.start.commands[1].upload.source",
    ),
    (
        "upload from a Secret in another namespace",
        lambda s: s["lifecycle"]["start"]["commands"][1]["upload"]["source"].update(
            inline=None, secretKeyRef={"name": "x", "key": "y", "namespace": "kube-system"}
        ),
        "spec.lifecycle.start.commands[1].upload.source.secretKeyRef.namespace",
    ),
    (
        "maxStartPrice above the budget",
        lambda s: s["market"].update(maxStartPrice="6"),
        "spec.market.maxStartPrice",
    ),
    (
        "a provider both allowed and denied",
        lambda s: s["market"]["providers"].update(allow=["provider-bad"]),
        "spec.market.providers",
    ),
    (
        "a price with absurd precision",
        lambda s: s["market"].update(maxEnvPerHour="0." + "1" * 19),
        "spec.market.maxEnvPerHour",
    ),
    ("a negative budget", lambda s: s.update(budget="-1"), "spec.budget"),
    ("a float budget", lambda s: s.update(budget=1.5), "spec.budget"),
    ("a megabyte budget", lambda s: s.update(budget="9" * 1_000_000), "spec.budget"),
]


class Admission:
    """Server-side dry runs against the test API server (strict field validation)."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.http = httpx.Client(
            base_url=cp.server,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            verify=ctx,
            timeout=30,
        )
        self.url = (
            f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{namespace}/"
            f"{constants.PLURAL}?dryRun=All&fieldValidation=Strict"
        )

    def submit(self, doc: dict[str, Any]) -> tuple[int, str]:
        doc = {**doc, "metadata": {"name": f"bad-{uuid.uuid4().hex[:8]}"}}
        response = self.http.post(self.url, content=json.dumps(doc))
        if response.status_code < 300:
            return response.status_code, ""
        return response.status_code, str(response.json().get("message", response.text))


@pytest.fixture(scope="module")
def admission(control_plane: ControlPlane) -> Iterator[Admission]:
    namespace = f"bad-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl_run("create", "namespace", namespace)
    checker = Admission(control_plane, namespace)
    yield checker
    checker.http.close()


def test_the_unmutated_example_is_admitted(admission: Admission) -> None:
    assert admission.submit(example()) == (201, "")


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutations())
def test_invalid_manifests_are_refused_naming_the_field(
    admission: Admission, case: tuple[dict[str, Any], str, str]
) -> None:
    doc, where, what = case
    status, message = admission.submit(doc)
    assert status in (400, 422), f"{what}: admitted ({status})"
    assert where in message, f"{what}: the refusal does not name {where}: {message[:600]}"


@pytest.mark.parametrize(("what", "mutate", "where"), CROSS_FIELD, ids=[c[0] for c in CROSS_FIELD])
def test_cross_field_rules_are_refused_naming_the_field(
    admission: Admission, what: str, mutate: Any, where: str
) -> None:
    doc = copy.deepcopy(example())
    mutate(doc["spec"])
    for source in (
        c.get("upload", {}).get("source", {}) for c in doc["spec"]["lifecycle"]["start"]["commands"]
    ):
        if source.get("inline", "") is None:
            del source["inline"]
    status, message = admission.submit(doc)
    assert status in (400, 422), f"{what}: admitted ({status})"
    assert where in message, f"{what}: the refusal does not name {where}: {message[:600]}"
