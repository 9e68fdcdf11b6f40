"""Outbound access by computation manifest: spec.payload.manifest, end to end.

The test starts two HTTP servers on the host's loopback; the service's manifest lists one of
them. It runs on a localnet provider with outbound access (providers.yaml: outbound-*), whose
run script fetches both from inside its sandbox: the listed one answers, the other one is
unreachable. The manifest comes inline or from a ConfigMap; bad ones are refused naming the
field, at admission when the schema can say it, in the Degraded condition otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from golem_operator.constants import UPLOAD_LABEL
from golem_operator.devenv.stack import OperatorProcess
from support.operator_harness import Service, simple_manifest

# Fetches every URL given, one line each: OK and the body, or FAILED and the reason.
FETCH = (
    "import sys, urllib.request\n"
    "for url in sys.argv[1:]:\n"
    "    try:\n"
    "        body = urllib.request.urlopen(url, timeout=5).read().decode()\n"
    "        print('OK', url, body)\n"
    "    except Exception as error:\n"
    "        print('FAILED', url, type(error).__name__)\n"
)


def document(urls: list[str]) -> dict[str, Any]:
    return {
        "version": "0.1.0",
        "createdAt": "2025-01-01T00:00:00Z",
        "expiresAt": "2100-01-01T00:00:00Z",
        "metadata": {"name": "outbound test"},
        "payload": [],
        "compManifest": {
            "version": "0.1.0",
            "net": {"inet": {"out": {"protocols": ["http"], "urls": urls}}},
        },
    }


@pytest.fixture(scope="module")
def http_servers() -> Iterator[tuple[str, str]]:
    """Two HTTP servers on 127.0.0.1, each answering with its name: allowed, forbidden."""
    servers = []
    for name in ("allowed", "forbidden"):

        class Handler(BaseHTTPRequestHandler):
            body = name.encode()

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(self.body)))
                self.end_headers()
                self.wfile.write(self.body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    allowed, forbidden = (f"http://127.0.0.1:{s.server_address[1]}/data" for s in servers)
    yield allowed, forbidden
    for server in servers:
        server.shutdown()
        server.server_close()


def outbound_service(manifest: dict[str, Any], urls: tuple[str, str]) -> dict[str, Any]:
    doc = simple_manifest(replicas=1)
    doc["spec"]["payload"]["manifest"] = manifest
    doc["spec"]["lifecycle"]["run"]["commands"] = [
        {"run": {"entrypoint": "/usr/bin/python3", "args": ["-c", FETCH, *urls]}}
    ]
    return doc


def fetch_lines(instance: dict[str, Any]) -> list[str]:
    """What the fetch script printed, once lastRun is a run script's (the start script's
    output shows there first)."""
    lines = str(instance.get("lastRun", {}).get("stdout", "")).splitlines()
    return lines if lines and lines[0].startswith(("OK ", "FAILED ")) else []


def wait_fetched(service: Service) -> tuple[dict[str, Any], list[str]]:
    """The Running instance and the lines its run script printed."""
    instance = service.wait(
        "a run script result",
        lambda: (i := service.instances("Running")) and fetch_lines(i[0]) and i[0],
        90,
    )
    return instance, fetch_lines(instance)


def test_the_listed_url_is_reachable_and_no_other(
    service: Service, http_servers: tuple[str, str]
) -> None:
    allowed, forbidden = http_servers
    manifest = {"inline": json.dumps(document([allowed]), indent=2) + "\n"}
    service.apply(outbound_service(manifest, (allowed, forbidden)))
    instance, lines = wait_fetched(service)
    # Only a provider with outbound access matches the demand.
    assert instance["provider"]["name"].startswith("outbound-"), instance["provider"]
    assert lines == [f"OK {allowed} allowed", f"FAILED {forbidden} URLError"], lines
    (activity,) = [
        a for a in service.net.audit()["activities"] if a["activityId"] == instance["activityId"]
    ]
    assert activity["outboundTargets"] == [allowed.removeprefix("http://").split("/")[0]]


def test_a_manifest_from_a_config_map(
    service: Service, http_servers: tuple[str, str], tmp_path: Any
) -> None:
    allowed, forbidden = http_servers
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document([allowed])))
    service.cp.kubectl_run(
        "create", "configmap", "outbound", "-n", service.namespace, f"--from-file={path}"
    )
    manifest = {"configMapKeyRef": {"name": "outbound", "key": "manifest.json"}}
    service.apply(outbound_service(manifest, (allowed, forbidden)))
    instance, lines = wait_fetched(service)
    assert instance["provider"]["name"].startswith("outbound-")
    assert lines == [f"OK {allowed} allowed", f"FAILED {forbidden} URLError"], lines


def test_a_signature_without_its_algorithm_is_refused_at_admission(service: Service) -> None:
    doc = outbound_service(
        {
            "configMapKeyRef": {"name": "outbound", "key": "manifest.json"},
            "signature": {"inline": "AAAA"},
            "certificate": {"inline": "C"},
        },
        ("http://127.0.0.1:1/", "http://127.0.0.1:2/"),
    )
    doc["metadata"]["name"] = service.name
    result = service.cp.kubectl_run(
        "apply", "-n", service.namespace, "-f", "-", input=json.dumps(doc), check=False
    )
    assert result.returncode != 0
    assert "spec.payload.manifest.signatureAlgorithm" in result.stderr
    assert "signature needs signatureAlgorithm" in result.stderr
    assert not service.get()


def degraded(service: Service, reason: str) -> dict[str, Any]:
    found: dict[str, Any] = service.wait(
        f"Degraded {reason}",
        lambda: (c := service.condition("Degraded")).get("reason") == reason and c,
        30,
    )
    return found


def test_an_inline_manifest_that_is_not_json_is_reported_naming_the_field(
    service: Service,
) -> None:
    service.apply(outbound_service({"inline": "{not json"}, ("http://127.0.0.1:1/",) * 2))
    condition = degraded(service, "InvalidSpec")
    assert condition["message"].startswith("spec.payload.manifest.inline: not valid JSON")
    assert service.instances() == []


def test_a_bad_url_in_a_config_map_manifest_is_reported_and_nothing_is_rented(
    service: Service,
) -> None:
    bad = json.dumps(document(["http://127.0.0.1:1/", "not a url"]))
    service.cp.kubectl_run(
        "create", "configmap", "bad", "-n", service.namespace, f"--from-literal=m.json={bad}"
    )
    manifest = {"configMapKeyRef": {"name": "bad", "key": "m.json"}}
    service.apply(outbound_service(manifest, ("http://127.0.0.1:1/",) * 2))
    condition = degraded(service, "ManifestInvalid")
    assert condition["message"] == (
        "spec.payload.manifest.configMapKeyRef (ConfigMap 'bad' key 'm.json'): "
        "compManifest.net.inet.out.urls[1]: not a URL: 'not a url' "
        "(expected scheme://host[:port][/path])"
    )
    assert not service.status.get("demandId")
    assert not service.agreements()


def test_a_manifest_from_a_secret_needs_the_label_and_never_shows_its_content(
    service: Service, operator: OperatorProcess
) -> None:
    cp, ns = service.cp, service.namespace
    hidden = "http://hidden-target.invalid:8080/do-not-show"
    secret_manifest = json.dumps(document([hidden, "no url here either"]))
    cp.kubectl_run(
        "create", "secret", "generic", "outbound", "-n", ns, f"--from-literal=m={secret_manifest}"
    )
    manifest = {"secretKeyRef": {"name": "outbound", "key": "m"}}
    service.apply(outbound_service(manifest, ("http://127.0.0.1:1/",) * 2))
    unlabelled = degraded(service, "ManifestInvalid")
    assert unlabelled["message"].startswith("spec.payload.manifest.secretKeyRef")
    assert f'{UPLOAD_LABEL}: "true"' in unlabelled["message"]

    cp.kubectl_run("label", "secret", "outbound", "-n", ns, f"{UPLOAD_LABEL}=true")
    labelled = service.wait(
        "the manifest's own problem",
        lambda: "urls[1]" in (c := service.condition("Degraded")).get("message", "") and c,
        30,
    )
    assert labelled["message"].startswith(
        "spec.payload.manifest.secretKeyRef (Secret 'outbound' key 'm'): "
        "compManifest.net.inet.out.urls[1]: not a URL: [redacted: Secret content]"
    )
    logs = operator.log.read_text()
    for text in (json.dumps(service.get()), json.dumps(service.events()), logs):
        assert "hidden-target" not in text and "no url here either" not in text
    assert not service.agreements()
