"""Uploads from inline text, ConfigMaps and Secrets; downloads into status; GitOps re-apply."""

from __future__ import annotations

import base64
import json
import subprocess

from golem_operator.constants import UPLOAD_LABEL
from golem_operator.core.redaction import MARKER as REDACTED
from support.operator_harness import Service, simple_manifest


def test_uploads_and_downloads(service: Service) -> None:
    cp, ns = service.cp, service.namespace
    cp.kubectl_run("create", "configmap", "settings", "-n", ns, '--from-literal=app.json={"a": 1}')
    cp.kubectl_run(
        "create", "secret", "generic", "token", "-n", ns, "--from-literal=t=s3cret-value"
    )
    # Upload commands read only Secrets that opt in.
    cp.kubectl_run("label", "secret", "token", "-n", ns, f"{UPLOAD_LABEL}=true")
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
    run = doc["spec"]["lifecycle"]["run"]["commands"]
    # A script that shows what it was given: plain, trimmed by echo, and in base64.
    run.append(
        {
            "run": {
                "entrypoint": "/bin/sh",
                "args": ["-c", "cat /golem/work/token; echo; base64 /golem/work/token"],
            }
        }
    )
    run.append({"download": {"path": "/golem/work/token", "maxBytes": 64}})
    run.append({"download": {"path": "/golem/work/motd", "maxBytes": 5}})
    service.apply(doc)
    instance = service.wait_running(1)[0]
    activity = instance["activityId"]
    assert service.net.read_file(activity, "/golem/work/motd") == "héllo ✓"
    assert json.loads(service.net.read_file(activity, "/golem/work/app.json") or "") == {"a": 1}
    assert service.net.read_file(activity, "/golem/work/token") == "s3cret-value"
    downloads = service.wait(
        "downloads in status",
        lambda: (i := service.instances("Running")) and i[0].get("downloads"),
        30,
    )
    by_path = {d["path"]: d for d in downloads}
    assert by_path["/golem/work/motd"]["content"] == "héll"  # the first 5 bytes, decoded
    assert by_path["/golem/work/motd"]["truncated"] is True
    # The Secret's content, fetched back or printed by a script, shows as a marker only.
    assert by_path["/golem/work/token"]["content"] == REDACTED
    stdout = service.instances("Running")[0]["lastRun"]["stdout"]
    assert stdout.splitlines() == [REDACTED, REDACTED], stdout
    encoded = base64.b64encode(b"s3cret-value").decode()
    for text in (json.dumps(service.get()), json.dumps(service.events())):
        assert "s3cret-value" not in text and encoded not in text


def test_upload_from_a_secret_without_the_opt_in_label_is_refused(service: Service) -> None:
    cp, ns = service.cp, service.namespace
    cp.kubectl_run("create", "secret", "generic", "app-key", "-n", ns, "--from-literal=k=topsecret")
    doc = simple_manifest(replicas=1)
    doc["spec"]["lifecycle"]["start"]["commands"].insert(
        0,
        {
            "upload": {
                "path": "/golem/work/key",
                "source": {"secretKeyRef": {"name": "app-key", "key": "k"}},
            }
        },
    )
    service.apply(doc)
    degraded = service.wait(
        "UploadSourceInvalid",
        lambda: (c := service.condition("Degraded")).get("reason") == "UploadSourceInvalid" and c,
    )
    message = degraded["message"]
    assert "lifecycle.start.commands[0].upload.source.secretKeyRef" in message
    assert f'{UPLOAD_LABEL}: "true"' in message
    # Nothing rented for a start that could not upload.
    assert not any(i.get("agreementId") for i in service.instances())
    assert not service.agreements()
    assert "topsecret" not in json.dumps(service.get())


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
    message = failed["message"]
    assert "lifecycle.start.commands[0].upload.source.secretKeyRef" in message
    assert "upload to /golem/work/x" in message and "404" in message


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
