"""GolemServiceInstance objects: get, describe, scale and delete instances with kubectl."""

from __future__ import annotations

import json
from typing import Any

from golem_operator.devenv.stack import OperatorProcess
from support.operator_harness import Service, simple_manifest


def kubectl_json(service: Service, *args: str) -> Any:
    out = service.cp.kubectl_run(*args, "-n", service.namespace, "-o", "json")
    return json.loads(out.stdout)


def instance_objects(service: Service) -> list[dict[str, Any]]:
    selector = service.status["selector"]
    items: list[dict[str, Any]] = kubectl_json(service, "get", "gsi", "-l", selector)["items"]
    return items


def test_each_instance_is_an_object_owned_by_its_service(service: Service) -> None:
    service.apply(simple_manifest(replicas=2))
    running = service.wait_running(2)
    # The summary follows the instance objects within a status write interval.
    service.wait(
        "the summary counting 2 Running",
        lambda: service.status.get("instanceCounts", {}).get("running") == 2,
        15,
    )
    owner = service.get()
    status = owner["status"]
    # The service's own status is a summary: counts, selector, no instance list.
    assert "instances" not in kubectl_json(service, "get", "gsvc", service.name)["status"]
    assert status["instanceCounts"]["running"] == 2
    assert status["readyReplicas"] == 2 and status["availableReplicas"] == 2
    # The scale subresource exposes the selector (kubectl get gsi -l, an HPA).
    scale = json.loads(
        service.cp.kubectl_run(
            "get",
            "--raw",
            f"/apis/services.golem.network/v1alpha1/namespaces/{service.namespace}"
            f"/golemservices/{service.name}/scale",
        ).stdout
    )
    assert scale["status"]["selector"] == f"services.golem.network/service={service.name}"
    assert scale["status"]["replicas"] == 2

    objects = instance_objects(service)
    assert sorted(o["metadata"]["name"] for o in objects) == sorted(i["name"] for i in running)
    revisions = {o["metadata"]["labels"]["services.golem.network/revision"] for o in objects}
    assert len(revisions) == 1 and len(revisions.pop()) == 10
    for obj in objects:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["kind"] == "GolemService" and ref["name"] == service.name
        assert ref["uid"] == owner["metadata"]["uid"]
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        assert obj["spec"]["service"] == service.name
        assert obj["metadata"]["finalizers"] == ["services.golem.network/settle"]
        assert obj["status"]["state"] == "Running" and obj["status"]["agreementId"]

    # kubectl get gsi prints like kubectl get pods; -o wide adds the Golem ids.
    table = service.cp.kubectl_run("get", "gsi", "-n", service.namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "PROVIDER", "RESTARTS", "AGE"]
    assert all(" Running " in row for row in table[1:]) and len(table) == 3
    wide = service.cp.kubectl_run("get", "gsi", "-n", service.namespace, "-o", "wide").stdout
    assert "AGREEMENT" in wide.splitlines()[0]
    assert running[0]["agreementId"] in wide

    # kubectl describe gsi shows that instance's own Events.
    described = service.cp.kubectl_run(
        "describe", "gsi", "-n", service.namespace, running[0]["name"]
    ).stdout
    assert "AgreementSigned" in described and "Started" in described
    assert running[1]["name"] + ":" not in described  # not the other instance's story


def test_kubectl_delete_gsi_stops_that_instance_and_the_service_replaces_it(
    service: Service,
) -> None:
    service.apply(simple_manifest(replicas=2))
    running = service.wait_running(2)
    victim, other = running
    service.cp.kubectl_run("delete", "gsi", "-n", service.namespace, victim["name"], "--wait=false")
    # Its object goes only once the instance stopped and its invoice was accepted.
    service.wait(
        "the deleted instance's object gone",
        lambda: victim["name"] not in {i["name"] for i in service.instances()},
        90,
    )
    assert service.net.read_file(victim["activityId"], "/golem/work/stopped") is not None
    audit = service.net.audit()
    agreement = next(a for a in audit["agreements"] if a["agreementId"] == victim["agreementId"])
    assert agreement["state"] == "Terminated"
    invoices = [i for i in audit["invoices"] if i["agreementId"] == victim["agreementId"]]
    assert [i["status"] for i in invoices] == ["ACCEPTED"]
    # The service replaced it; the other instance was left alone.
    now_running = service.wait_running(2, timeout=60)
    names = {i["name"] for i in now_running}
    assert other["name"] in names and victim["name"] not in names
    assert other["agreementId"] in {i["agreementId"] for i in now_running}
    assert service.condition("Ready")["status"] == "True"


def test_deleting_the_service_removes_every_instance_object(service: Service) -> None:
    service.apply(simple_manifest(replicas=2))
    service.wait_running(2)
    selector = service.status["selector"]
    service.delete(wait=True, timeout=120)
    left = kubectl_json(service, "get", "gsi", "-l", selector)["items"]
    assert left == []
    service.assert_settled()


def test_instances_recorded_in_status_by_an_older_version_are_adopted(
    service: Service, operator: OperatorProcess
) -> None:
    """An object written by a version before GolemServiceInstance (status.instances) gets one
    object per instance, with no agreement lost and none duplicated."""
    service.apply(simple_manifest(replicas=2))
    running = service.wait_running(2)
    before = {a["agreementId"] for a in service.agreements()}
    operator.kill()
    # What the older version had: the instances in the service's status, no instance objects.
    legacy = []
    for obj in instance_objects(service):
        legacy.append({"name": obj["metadata"]["name"], **obj["status"]})
        service.cp.kubectl_run(
            "patch",
            "gsi",
            "-n",
            service.namespace,
            obj["metadata"]["name"],
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
        service.cp.kubectl_run("delete", "gsi", "-n", service.namespace, obj["metadata"]["name"])
    service.cp.kubectl_run(
        "patch",
        "gsvc",
        "-n",
        service.namespace,
        service.name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"instances": legacy}}),
    )
    assert instance_objects(service) == []
    operator.start()
    service.wait(
        "instance objects adopted from status.instances",
        lambda: (
            sorted(i.get("agreementId") or "" for i in service.instances("Running"))
            == sorted(i["agreementId"] for i in running)
        ),
        60,
    )
    service.wait(
        "status.instances cleared",
        lambda: (
            "instances" not in kubectl_json(service, "get", "gsvc", service.name).get("status", {})
        ),
        30,
    )
    assert {a["agreementId"] for a in service.agreements()} == before
    reasons = service.events_by_reason()
    assert "InstancesAdopted" in reasons
