"""How a localnet provider reads a demand's manifest: what it refuses, what it grants."""

from __future__ import annotations

import base64
import json
from typing import Any

from golem_operator.localnet import outbound
from golem_operator.localnet.config import expand_providers, parse_config
from golem_operator.localnet.model import Provider


def properties(out: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": "0.1.0",
        "createdAt": "2025-01-01T00:00:00Z",
        "expiresAt": "2100-01-01T00:00:00Z",
        "payload": [{"urls": ["http://127.0.0.1:1/image"], "hash": "sha3:" + "ab" * 28}],
    }
    if out is not None:
        document["compManifest"] = {"version": "0.1.0", "net": {"inet": {"out": out}}}
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return {outbound.P_MANIFEST: encoded, **extra}


def test_loopback_urls_are_granted_by_host_and_port() -> None:
    granted = outbound.grant(
        properties(
            {
                "urls": [
                    "http://127.0.0.1:8080/a",
                    "http://127.0.0.1:8080/b",  # the same host:port, once
                    "http://localhost/c",
                    "ws://127.0.0.2:9000/socket",
                    "https://api.example.com/v1",
                    "http://10.0.0.1:80/",
                ]
            }
        )
    )
    assert granted.targets == (("127.0.0.1", 8080), ("127.0.0.1", 80), ("127.0.0.2", 9000))
    assert [s.split(":")[0] + ":" + s.split(":")[1] for s in granted.skipped] == [
        "https://api.example.com/v1",
        "http://10.0.0.1",
    ]
    assert granted.task_package == "hash:sha3:" + "ab" * 28 + ":http://127.0.0.1:1/image"


def test_protocols_limit_the_schemes() -> None:
    granted = outbound.grant(
        properties(
            {"protocols": ["https"], "urls": ["http://127.0.0.1:8080/", "https://127.0.0.1/"]}
        )
    )
    assert granted.targets == (("127.0.0.1", 443),)
    assert "http is not among the protocols" in granted.skipped[0]


def test_no_manifest_or_no_inet_grants_nothing() -> None:
    assert outbound.grant({}).targets == ()
    assert outbound.grant(properties(None)).targets == ()
    assert outbound.refusal({}) is None
    assert outbound.refusal(properties(None)) is None


def test_unrestricted_access_and_unreadable_manifests_are_refused() -> None:
    assert "never unrestricted" in str(outbound.refusal(properties({})))
    assert "is not base64" in str(outbound.refusal({outbound.P_MANIFEST: "%%%"}))
    not_json = base64.b64encode(b"{oops").decode()
    assert "invalid manifest format" in str(outbound.refusal({outbound.P_MANIFEST: not_json}))
    unsigned = properties({"urls": []}, **{outbound.P_SIGNATURE: "AAAA"})
    assert "needs golem.srv.comp.payload.sig.algorithm" in str(outbound.refusal(unsigned))
    no_cert = properties(
        {"urls": []}, **{outbound.P_SIGNATURE: "AAAA", outbound.P_SIGNATURE_ALGORITHM: "sha256"}
    )
    assert "needs golem.srv.comp.payload.cert" in str(outbound.refusal(no_cert))


def test_outbound_providers_offer_inet_and_manifest_support() -> None:
    config = parse_config({"providers": [{"name": "out", "outbound": True}, {"name": "plain"}]})
    offers = {s.name: Provider(s).offer_properties() for s in expand_providers(config)}
    assert {"inet", "manifest-support"} <= set(offers["out"]["golem.runtime.capabilities"])
    assert offers["out"]["golem.srv.caps.payload-manifest"] is True
    assert offers["plain"]["golem.runtime.capabilities"] == ["vpn"]
    assert offers["plain"]["golem.srv.caps.payload-manifest"] is False
