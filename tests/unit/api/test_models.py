"""The API models: defaults, round trips, and the generated CRD staying in sync."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from golem_operator.api.crd import CRD_FILES, crd, crd_yaml, instance_crd
from golem_operator.api.spec import GolemServiceSpec, RestartPolicy, parse_duration
from golem_operator.api.status import GolemServiceStatus, InstanceState

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = {"payload": {"image": {"tag": "golem/simple-service:latest"}}, "budget": "1"}


def examples() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "GolemService"]
    return docs


def test_defaults_follow_the_sdk() -> None:
    spec = GolemServiceSpec.model_validate(MINIMAL)
    assert spec.replicas == 1
    assert spec.payload.min_mem_gib == 0.5
    assert spec.payload.min_storage_gib == 2.0
    assert spec.payload.min_cpu_threads == 1
    assert [c.kind for c in spec.lifecycle.start.full_script()] == ["deploy", "start"]
    assert spec.lifecycle.run.commands == []
    assert spec.lifecycle.run.interval_seconds == 10
    assert spec.respawn_unstarted_instances is True
    assert spec.restart_policy is RestartPolicy.ALWAYS
    assert spec.market.payment.platform == "erc20-holesky-tglm"


def test_start_script_prepends_deploy_and_start_unless_given() -> None:
    run = {"run": {"entrypoint": "/golem/run/x.py"}}
    implicit = GolemServiceSpec.model_validate(
        {**MINIMAL, "lifecycle": {"start": {"commands": [run]}}}
    )
    assert [c.kind for c in implicit.lifecycle.start.full_script()] == ["deploy", "start", "run"]
    explicit = GolemServiceSpec.model_validate(
        {**MINIMAL, "lifecycle": {"start": {"commands": [{"deploy": {}}, run]}}}
    )
    assert [c.kind for c in explicit.lifecycle.start.full_script()] == ["deploy", "run"]


@pytest.mark.parametrize("manifest", examples(), ids=lambda m: m["metadata"]["name"])
def test_examples_round_trip(manifest: dict[str, Any]) -> None:
    spec = GolemServiceSpec.model_validate(manifest["spec"])
    dumped = spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped == manifest["spec"]
    assert GolemServiceSpec.model_validate(dumped) == spec


def test_unknown_fields_are_refused_with_their_name() -> None:
    with pytest.raises(ValidationError, match="replcas"):
        GolemServiceSpec.model_validate({**MINIMAL, "replcas": 3})


def test_status_round_trip_and_tolerates_newer_fields() -> None:
    raw = {
        "observedGeneration": 2,
        "replicas": 1,
        "readyReplicas": 1,
        "selector": "services.golem.network/service=x",
        "instances": [{"name": "x-1", "state": "Running", "agreementId": "a", "futureField": 1}],
        "spent": "0.25",
    }
    status = GolemServiceStatus.model_validate(raw)
    assert status.instances[0].state is InstanceState.RUNNING
    assert status.instances[0].agreement_id == "a"
    again = GolemServiceStatus.model_validate(status.model_dump(by_alias=True))
    assert again == status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "m", "1d", "15 m", "-1h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_committed_crd_matches_the_models(kind: str) -> None:
    committed = (ROOT / "crds" / CRD_FILES[kind]).read_text()
    assert committed == crd_yaml(kind), "crds/ drifted: run `golem-operator crd -o crds/`"


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        if not prop.get("description"):
            missing.append(here)
        missing += _walk(prop, here)
        if "items" in prop:
            missing += _walk(prop["items"], here + "[]")
        if isinstance(prop.get("additionalProperties"), dict):
            missing += _walk(prop["additionalProperties"], here + "{}")
    return missing


@pytest.mark.parametrize("make", [crd, instance_crd])
def test_every_field_is_described_for_kubectl_explain(make: Any) -> None:
    root = make()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [p for p in _walk(root, "") if p != ".metadata"]
    assert missing == []


def test_instance_crd_bounds_its_status_and_prints_like_pods() -> None:
    version = instance_crd()["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["message"]["maxLength"] == 1024
    assert status["downloads"]["maxItems"] == 16
    assert status["downloads"]["items"]["properties"]["content"]["maxLength"] == 65536
    assert status["lastRun"]["properties"]["stdout"]["maxLength"] == 2048
    assert "name" not in status and "revision" not in status
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    assert {n for n, p in columns.items() if p == 0} == {"State", "Provider", "Restarts", "Age"}
    assert version["subresources"] == {"status": {}}


def test_crd_is_structural() -> None:
    text = crd_yaml("all")
    for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "title:", "additionalProperties: false"):
        assert forbidden not in text
    version = crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    assert {n for n, p in columns.items() if p == 0} == {"Desired", "Ready", "Phase", "Age"}


@pytest.mark.parametrize("constraint", ["(a))(b)", "((a)", "(a)(b))"])
def test_unbalanced_constraints_are_refused_naming_the_field(constraint: str) -> None:
    payload = {"image": {"tag": "a/b:c"}, "constraints": [constraint]}
    with pytest.raises(ValidationError) as caught:
        GolemServiceSpec.model_validate({**MINIMAL, "payload": payload})
    error = caught.value.errors()[0]
    assert error["loc"][:2] == ("payload", "constraints")
    assert "unbalanced parentheses" in error["msg"] or "pattern" in error["msg"]


@pytest.mark.parametrize(
    ("strategy", "names"),
    [
        ({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}, "cannot both be 0"),
        ({"rollingUpdate": {"maxSurge": "half"}}, "maxSurge"),
        ({"rollingUpdate": {"maxUnavailable": -1}}, "maxUnavailable"),
        ({"rollingUpdate": {"maxSurge": "3"}}, "maxSurge"),  # a string must be a percentage
        ({"type": "Recreate", "rollingUpdate": {}}, "rollingUpdate"),
    ],
)
def test_bad_update_strategies_are_refused_naming_the_field(
    strategy: dict[str, Any], names: str
) -> None:
    with pytest.raises(ValidationError, match=names):
        GolemServiceSpec.model_validate({**MINIMAL, "updateStrategy": strategy})


def test_rollout_fields_default_as_a_deployment_does() -> None:
    spec = GolemServiceSpec.model_validate(MINIMAL)
    assert spec.update_strategy.type.value == "RollingUpdate"
    assert spec.update_strategy.rolling_update is None  # 25% / 25%
    assert (spec.min_ready_seconds, spec.progress_deadline_seconds) == (0, 600)
    assert (spec.paused, spec.revision_history_limit) == (False, 10)
    with pytest.raises(ValidationError, match="progressDeadlineSeconds"):
        GolemServiceSpec.model_validate({**MINIMAL, "minReadySeconds": 600})


NETWORK = {"network": {"cidr": "192.168.0.0/24"}}


def test_ports_default_to_tcp_and_are_not_part_of_the_revision() -> None:
    from golem_operator.core.revision import revision

    spec = GolemServiceSpec.model_validate(
        {**MINIMAL, **NETWORK, "ports": [{"name": "http", "port": 8080}]}
    )
    assert [(p.name, p.port, p.protocol.value) for p in spec.ports] == [("http", 8080, "TCP")]
    without = GolemServiceSpec.model_validate({**MINIMAL, **NETWORK})
    assert without.ports == [] and revision(without) == revision(spec)


@pytest.mark.parametrize(
    ("ports", "names"),
    [
        ([{"name": "http", "port": 80}, {"name": "http", "port": 81}], "name of its own"),
        ([{"name": "a", "port": 80}, {"name": "b", "port": 80}], "port number may appear"),
        ([{"name": "http", "port": 0}], "ports"),
        ([{"name": "http", "port": 65536}], "ports"),
        ([{"name": "http", "port": 80, "protocol": "UDP"}], "protocol"),
        ([{"name": "Http", "port": 80}], "name"),
        ([{"port": 80}], "name"),
    ],
)
def test_bad_ports_are_refused_naming_the_field(ports: list[Any], names: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GolemServiceSpec.model_validate({**MINIMAL, **NETWORK, "ports": ports})
    error = caught.value.errors()[0]
    assert error["loc"][0] == "ports"
    assert names in f"{error['loc']} {error['msg']}"


def test_ports_need_a_network() -> None:
    with pytest.raises(ValidationError, match=r"spec\.ports needs spec\.network"):
        GolemServiceSpec.model_validate({**MINIMAL, "ports": [{"name": "http", "port": 80}]})
