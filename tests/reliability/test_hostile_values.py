"""Hostile values the schema admits: the operator copes, says why, and keeps serving the rest.

One operator, one namespace, several services applied together: a healthy one that must keep
Running throughout, and services with megabytes of command output, unicode everywhere, an
upload from a Secret that only exists in another namespace, one from a Secret that did not opt
in, one whose script prints the uploaded Secret back (and downloads it), a budget no daemon can
fund, a golemRef to a missing Secret and a near-megabyte start script.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reliability_support import (
    UPLOADED_SECRETS,
    DaemonGate,
    delete_all,
    gsvc_status,
    start_operator,
    wait_for,
)

from golem_operator.constants import UPLOAD_LABEL
from golem_operator.core.redaction import MARKER as REDACTED
from golem_operator.devenv.controlplane import ControlPlane
from golem_operator.devenv.stack import LocalNetProcess
from support.operator_harness import simple_manifest

UNICODE = "Grüße 👋 עברית 日本語 ç\u00e0 ∑"
SECRET_VALUE = "other-namespace-secret-" + uuid.uuid4().hex
UNLABELLED_VALUE = "unlabelled-secret-" + uuid.uuid4().hex
LEAKED_VALUE = "uploaded-secret-" + uuid.uuid4().hex


def _run(script: str) -> dict[str, Any]:
    return {"run": {"entrypoint": "/bin/sh", "args": ["-c", script]}}


def huge_output(doc: dict[str, Any]) -> None:
    doc["spec"]["lifecycle"]["run"]["commands"] = [
        _run("head -c 3000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero | tr '\\0' y >&2")
    ]


def unicode_everywhere(doc: dict[str, Any]) -> None:
    command = _run(f'printf "%s|%s" "$GREETING" "{UNICODE}"')
    command["run"]["env"] = [{"name": "GREETING", "value": UNICODE}]
    doc["spec"]["lifecycle"]["run"]["commands"] = [command]
    doc["metadata"]["annotations"] = {"note": UNICODE}


def other_namespace_secret(doc: dict[str, Any]) -> None:
    upload = {
        "path": "/golem/work/stolen",
        "source": {"secretKeyRef": {"name": "loot", "key": "k"}},
    }
    doc["spec"]["lifecycle"]["start"]["commands"].insert(0, {"upload": upload})


def unlabelled_secret(doc: dict[str, Any]) -> None:
    upload = {
        "path": "/golem/work/key",
        "source": {"secretKeyRef": {"name": "plain", "key": "k"}},
    }
    doc["spec"]["lifecycle"]["start"]["commands"].insert(0, {"upload": upload})


def printed_secret(doc: dict[str, Any]) -> None:
    upload = {
        "path": "/golem/work/token",
        "source": {"secretKeyRef": {"name": "shared", "key": "k"}},
    }
    doc["spec"]["lifecycle"]["start"]["commands"].insert(0, {"upload": upload})
    doc["spec"]["lifecycle"]["start"]["commands"].append(_run("cat /golem/work/token"))
    doc["spec"]["lifecycle"]["run"]["commands"] = [
        _run("cat /golem/work/token; echo; base64 /golem/work/token; cat /golem/work/token >&2"),
        {"download": {"path": "/golem/work/token"}},
    ]


def unfundable_budget(doc: dict[str, Any]) -> None:
    doc["spec"]["budget"] = "999999999999999999.999999999999999999"


def missing_golem_ref(doc: dict[str, Any]) -> None:
    doc["spec"]["golemRef"] = {"secretName": "no-such-secret"}


def huge_script(doc: dict[str, Any]) -> None:
    # 24 arguments of 32 KiB: 768 KiB of start script, under the API server's limits.
    args = ["-c", "echo ok", *["z" * 32768] * 24]
    doc["spec"]["lifecycle"]["start"]["commands"].insert(
        0, {"run": {"entrypoint": "/bin/sh", "args": args}}
    )


HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "output": huge_output,
    "unicode": unicode_everywhere,
    "othersecret": other_namespace_secret,
    "unlabelled": unlabelled_secret,
    "printed": printed_secret,
    "unfundable": unfundable_budget,
    "noref": missing_golem_ref,
    "bigscript": huge_script,
}


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_hostile_values_are_contained_and_the_healthy_service_keeps_running(
    control_plane: ControlPlane, rel_net: LocalNetProcess, rel_gate: DaemonGate, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = f"hostile-{uuid.uuid4().hex[:6]}"
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:6]}"
    for ns in (namespace, elsewhere):
        cp.kubectl_run("create", "namespace", ns)
    cp.kubectl_run(
        "create", "secret", "generic", "loot", "-n", elsewhere, f"--from-literal=k={SECRET_VALUE}"
    )
    # Labelled in the other namespace too: the namespace boundary holds regardless.
    cp.kubectl_run("label", "secret", "loot", "-n", elsewhere, f"{UPLOAD_LABEL}=true")
    cp.kubectl_run(
        "create",
        "secret",
        "generic",
        "plain",
        "-n",
        namespace,
        f"--from-literal=k={UNLABELLED_VALUE}",
    )
    cp.kubectl_run(
        "create", "secret", "generic", "shared", "-n", namespace, f"--from-literal=k={LEAKED_VALUE}"
    )
    cp.kubectl_run("label", "secret", "shared", "-n", namespace, f"{UPLOAD_LABEL}=true")
    UPLOADED_SECRETS.update({SECRET_VALUE, UNLABELLED_VALUE, LEAKED_VALUE})
    operator = start_operator(tmp_path / "op", cp, rel_gate, rel_net, [namespace])
    try:
        healthy = simple_manifest(replicas=1)
        healthy["metadata"] = {"name": "healthy"}
        cp.kubectl_run("create", "-n", namespace, "-f", "-", input=json.dumps(healthy))
        for name, mutate in HOSTILE.items():
            doc = simple_manifest(replicas=1)
            doc["metadata"] = {"name": name}
            mutate(doc)
            cp.kubectl_run("create", "-n", namespace, "-f", "-", input=json.dumps(doc))

        def status(name: str) -> dict[str, Any]:
            return gsvc_status(cp, namespace, name)

        def running(name: str) -> list[dict[str, Any]]:
            return [i for i in status(name).get("instances", []) if i["state"] == "Running"]

        first = wait_for("healthy Running", lambda: running("healthy"), 60)[0]

        # Megabytes of output: Running, only a capped tail in status.
        def output_capped() -> bool:
            found = running("output")
            return bool(found and found[0].get("lastRun", {}).get("stdout"))

        wait_for("output's run results", output_capped, 60)
        last = running("output")[0]["lastRun"]
        # The tail (the daemon may append its own truncation note), never the megabytes.
        assert "x" * 1000 in last["stdout"] and len(last["stdout"]) <= 2048, last
        assert "y" * 1000 in last["stderr"] and len(last["stderr"]) <= 2048, last
        assert len(json.dumps(status("output"))) < 64 * 1024

        # Unicode: passed through arguments and environment intact.
        wait_for(
            "unicode run results",
            lambda: (
                (r := running("unicode"))
                and r[0].get("lastRun", {}).get("stdout") == f"{UNICODE}|{UNICODE}"
            ),
            60,
        )

        # The other namespace's Secret is not read: nothing rented, a clear condition.
        blocked = wait_for(
            "UploadSourceInvalid",
            lambda: (
                (c := _condition(status("othersecret"), "Degraded")).get("reason")
                == "UploadSourceInvalid"
                and c
            ),
            60,
        )
        assert "/golem/work/stolen" in blocked["message"] and "404" in blocked["message"]
        assert all(i["state"] == "Pending" for i in status("othersecret")["instances"])
        assert not any(i.get("agreementId") for i in status("othersecret")["instances"])

        # A Secret that did not opt in is not read: nothing rented, the field and label named.
        unlabelled = wait_for(
            "unlabelled UploadSourceInvalid",
            lambda: (
                (c := _condition(status("unlabelled"), "Degraded")).get("reason")
                == "UploadSourceInvalid"
                and c
            ),
            60,
        )
        assert "lifecycle.start.commands[0].upload.source.secretKeyRef" in unlabelled["message"]
        assert f'{UPLOAD_LABEL}: "true"' in unlabelled["message"]
        assert not any(i.get("agreementId") for i in status("unlabelled")["instances"])

        # A script that prints and downloads what it was given: Running, the content redacted.
        def printed_results() -> Any:
            found = running("printed")
            return found and found[0].get("downloads") and found[0]

        printed = wait_for("printed's run results", printed_results, 60)
        assert printed["lastRun"]["stdout"].splitlines() == [REDACTED, REDACTED]
        assert printed["lastRun"]["stderr"] == REDACTED
        assert printed["downloads"][0]["content"] == REDACTED

        # A budget the daemon cannot fund, a missing golemRef: Degraded, saying why.
        unfunded = wait_for(
            "unfundable Degraded",
            lambda: (
                (c := _condition(status("unfundable"), "Degraded")).get("status") == "True" and c
            ),
            30,
        )
        assert "allocation" in unfunded["message"].lower(), unfunded
        assert "funds" in unfunded["message"].lower(), unfunded
        noref = wait_for(
            "noref Degraded",
            lambda: (
                (c := _condition(status("noref"), "Degraded")).get("reason") == "GolemRefInvalid"
                and c
            ),
            30,
        )
        assert "spec.golemRef" in noref["message"] and "404" in noref["message"]

        # A near-megabyte start script runs (or fails with a reason), never a respawn storm.
        def big_settled() -> Any:
            instances = status("bigscript").get("instances", [])
            return any(i["state"] == "Running" for i in instances) and instances

        big = wait_for("bigscript Running", big_settled, 60)
        assert len(big) <= 2, big

        # Through all of it the healthy service kept its instance and its run script going.
        time.sleep(3)
        now = running("healthy")
        assert [i["agreementId"] for i in now] == [first["agreementId"]]
        assert now[0]["lastRun"]["time"] > first["lastRun"]["time"]
        assert operator.proc is not None and operator.proc.poll() is None

        # No Secret's content went anywhere: status, Events, the operator's log (nor base64).
        everything = cp.kubectl_run("get", "gsvc,events", "-n", namespace, "-o", "json").stdout
        log = operator.log.read_text()
        for value in (SECRET_VALUE, UNLABELLED_VALUE, LEAKED_VALUE):
            encoded = base64.b64encode(value.encode()).decode()
            assert value not in everything and encoded not in everything
            assert value not in log and encoded not in log
    finally:
        try:
            delete_all(cp, namespace, 90)
        finally:
            operator.stop()
