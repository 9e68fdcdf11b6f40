"""Uploads from inline text, ConfigMaps and Secrets; downloads into status; GitOps re-apply."""

from __future__ import annotations

import json
import subprocess

from support.operator_harness import Service, simple_manifest


def test_uploads_and_downloads(service: Service) -> None:
    cp, ns = service.cp, service.namespace
    cp.kubectl_run("create", "configmap", "settings", "-n", ns, '--from-literal=app.json={"a": 1}')
    cp.kubectl_run(
        "create", "secret", "generic", "token", "-n", ns, "--from-literal=t=s3cret-value"
    )
    doc = simple_manifest(replicas=1)
    start = doc["spec"]["lifecycle"]["start"]["commands"]
    start[:0] = [
        {"upload": {"path": "/golem/work/motd", "source": {"inline": "héllo ✓"}}},
        {
            "upload": {
                "path": "/golem/work/app.json",
                "source": {"configMapKeyRef": {"name": "settings", "key": "app.json"}},
            }
        },
        {
            "upload": {
                "path": "/golem/work/token",
                "source": {"secretKeyRef": {"name": "token", "key": "t"}},
            }
        },
    ]
    doc["spec"]["lifecycle"]["run"]["commands"].append(
        {"download": {"path": "/golem/work/motd", "maxBytes": 5}}
    )
    service.apply(doc)
    instance = service.wait_running(1)[0]
    activity = instance["activityId"]
    assert service.net.read_file(activity, "/golem/work/motd") == "héllo ✓"
    assert json.loads(service.net.read_file(activity, "/golem/work/app.json") or "") == {"a": 1}
    assert service.net.read_file(activity, "/golem/work/token") == "s3cret-value"
    downloads = service.wait(
        "a download in status",
        lambda: (i := service.instances("Running")) and i[0].get("downloads"),
        30,
    )
    assert downloads[0]["path"] == "/golem/work/motd"
    assert downloads[0]["content"] == "héll"  # the first 5 bytes, decoded
    assert downloads[0]["truncated"] is True
    # The Secret's value is nowhere in status or Events.
    assert "s3cret-value" not in json.dumps(service.get())
    assert "s3cret-value" not in json.dumps(service.events())


def test_upload_from_a_missing_secret_fails_the_start_with_a_clear_message(
    service: Service,
) -> None:
    doc = simple_manifest(replicas=1, respawnUnstartedInstances=False)
    doc["spec"]["lifecycle"]["start"]["commands"].insert(
        0,
        {
            "upload": {
                "path": "/golem/work/x",
                "source": {"secretKeyRef": {"name": "nope", "key": "k"}},
            }
        },
    )
    service.apply(doc)
    failed = service.wait(
        "StartFailed",
        lambda: [i for i in service.instances("Terminated") if i["reason"] == "StartFailed"],
    )[0]
    assert "upload /golem/work/x" in failed["message"] and "404" in failed["message"]


def test_server_side_apply_twice_has_no_diff_or_conflict(service: Service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = simple_manifest(replicas=1)
    doc["metadata"]["name"] = service.name
    path = tmp_path / "svc.json"
    path.write_text(json.dumps(doc))
    args = ["-n", service.namespace, "-f", str(path), "--server-side", "--field-manager=gitops"]
    service.cp.kubectl_run("apply", *args)
    service.wait_running(1)
    body = service.get()
    assert "services.golem.network/finalizer" in body["metadata"]["finalizers"]
    # The operator's writes (finalizer, annotations, status) never touch the applied fields.
    again = service.cp.kubectl_run("apply", *args)
    assert "unchanged" in again.stdout or "serverside-applied" in again.stdout
    diff = subprocess.run(
        [str(service.cp.kubectl), f"--kubeconfig={service.cp.kubeconfig}", "diff", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr
    shown = service.cp.kubectl_run(
        "get", "-n", service.namespace, "gsvc", service.name, "-o", "json", "--show-managed-fields"
    )
    managers = {m["manager"]: m for m in json.loads(shown.stdout)["metadata"]["managedFields"]}
    spec_owners = [n for n, m in managers.items() if "f:spec" in json.dumps(m.get("fieldsV1", {}))]
    assert spec_owners == ["gitops"], spec_owners


def test_what_the_schema_cannot_say_is_reported_in_degraded(service: Service) -> None:
    doc = simple_manifest(replicas=1)
    doc["spec"]["payload"]["constraints"] = ["(golem.inf.cpu.threads>=1))(x=1)"]
    service.apply(doc)  # admission accepts it: the pattern only checks the outer parentheses
    degraded = service.wait(
        "Degraded InvalidSpec",
        lambda: (c := service.condition("Degraded")).get("reason") == "InvalidSpec" and c,
        30,
    )
    assert "spec.payload.constraints" in degraded["message"]
    assert "unbalanced parentheses" in degraded["message"]
    assert service.instances() == []
