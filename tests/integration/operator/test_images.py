"""Images resolve as the SDKs resolve them: through the image registry (here the local
network's), to the hash:sha3:<hex>:<url> task package a real exe-unit deploys; the resolution is
recorded and reused until the spec's image changes."""

from __future__ import annotations

from typing import Any

from golem_operator.devenv.stack import LocalNetProcess, OperatorProcess
from support.operator_harness import Service, simple_manifest


def image_info(net: LocalNetProcess, tag: str) -> dict[str, Any]:
    return next(i for i in net.images() if tag in i["tags"])


def packages(service: Service) -> set[str]:
    return {a["taskPackage"] for a in service.agreements()}


def test_a_tag_resolves_through_the_registry_to_hash_and_url(service: Service) -> None:
    expected = image_info(service.net, "golem/simple-service:latest")
    service.apply(simple_manifest(replicas=1))
    service.wait_running(1)
    image = service.status["image"]
    assert image["hash"] == expected["hash"]
    assert image["url"] == expected["url"]
    assert image["url"].startswith("http://127.0.0.1:")
    assert image["source"] == {
        "tag": "golem/simple-service:latest",
        "hash": "",
        "url": "",
        "registry": "",
    }
    assert image["resolvedAt"]
    # The demand names the hash and the URL the provider downloaded and verified.
    assert packages(service) == {f"hash:sha3:{expected['hash']}:{expected['url']}"}
    assert "ImageResolved" in service.events_by_reason()


def test_replacements_after_a_restart_deploy_the_recorded_bits_though_the_tag_moved(
    service: Service, operator: OperatorProcess
) -> None:
    old = image_info(service.net, "golem/simple-service:moving")
    doc = simple_manifest(replicas=1)
    doc["spec"]["payload"]["image"] = {"tag": "golem/simple-service:moving"}
    service.apply(doc)
    first = service.wait_running(1)[0]
    # The registry's tag now names other bits (the minimal image, which lacks the service's
    # scripts: a start on it would fail).
    minimal = image_info(service.net, "golem/minimal:latest")["hash"]
    service.net.retag("golem/simple-service:moving", minimal)
    # A restarted operator publishes a new demand, and a crash forces a replacement on it.
    operator.kill()
    operator.start()
    service.net.crash(first["activityId"])
    replacement = service.wait(
        "a replacement Running",
        lambda: [i for i in service.instances("Running") if i["name"] != first["name"]],
        120,
    )[0]
    assert replacement["agreementId"] != first["agreementId"]
    assert service.status["image"]["hash"] == old["hash"]
    assert packages(service) == {f"hash:sha3:{old['hash']}:{old['url']}"}
    assert len(service.agreements()) >= 2


def test_an_unknown_tag_is_a_condition_naming_the_field_and_nothing_is_rented(
    service: Service,
) -> None:
    doc = simple_manifest(replicas=1)
    doc["spec"]["payload"]["image"] = {"tag": "golem/no-such-image:1"}
    service.apply(doc)
    degraded = service.wait(
        "ImageResolutionFailed",
        lambda: (c := service.condition("Degraded")).get("reason") == "ImageResolutionFailed" and c,
    )
    assert degraded["message"].startswith('payload.image.tag "golem/no-such-image:1" not found')
    assert service.net.url in degraded["message"]
    assert "ImageResolutionFailed" in service.events_by_reason()
    assert "image" not in service.status
    assert not service.agreements()
    # Fixing the spec resolves and runs.
    doc["spec"]["payload"]["image"] = {"tag": "golem/simple-service:latest"}
    service.apply(doc)
    service.wait_running(1, 90)
    assert service.condition("Degraded")["status"] == "False"
