"""spec.payload.manifest: its sources, signature rules and the inline document's check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from golem_operator.api.crd import crd
from golem_operator.api.spec import GolemServiceSpec
from golem_operator.core.manifest import manifest_demand

ROOT = Path(__file__).resolve().parents[3]

DOCUMENT = {
    "version": "0.1.0",
    "createdAt": "2025-01-01T00:00:00Z",
    "expiresAt": "2100-01-01T00:00:00Z",
    "payload": [],
    "compManifest": {
        "version": "0.1.0",
        "net": {"inet": {"out": {"protocols": ["https"], "urls": ["https://api.example.com"]}}},
    },
}
INLINE = json.dumps(DOCUMENT)


def spec_with(manifest: dict[str, Any]) -> GolemServiceSpec:
    return GolemServiceSpec.model_validate(
        {"payload": {"image": {"tag": "golem/x:1"}, "manifest": manifest}, "budget": "1"}
    )


def error_of(manifest: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        spec_with(manifest)
    first = caught.value.errors()[0]
    return ".".join(str(p) for p in first["loc"]), str(first["msg"])


def test_every_source_form_is_accepted() -> None:
    ref = {"name": "m", "key": "manifest.json"}
    assert spec_with({"inline": INLINE}).payload.manifest is not None
    assert spec_with({"configMapKeyRef": ref}).payload.manifest is not None
    signed = spec_with(
        {
            "secretKeyRef": ref,
            "signature": {"configMapKeyRef": {"name": "m", "key": "sig"}},
            "signatureAlgorithm": "sha256",
            "certificate": {"inline": "-----BEGIN CERTIFICATE-----\nMIIB\n"},
        }
    )
    assert signed.payload.manifest is not None
    assert signed.payload.manifest.signature_algorithm == "sha256"


def test_no_manifest_by_default() -> None:
    spec = GolemServiceSpec.model_validate({"payload": {"image": {"tag": "a/b:1"}}, "budget": "1"})
    assert spec.payload.manifest is None


@pytest.mark.parametrize(
    ("manifest", "where", "message"),
    [
        ({"inline": "{nope"}, "payload.manifest.inline", "not valid JSON"),
        (
            {"inline": INLINE.replace("https://api.example.com", "api example")},
            "payload.manifest.inline",
            "compManifest.net.inet.out.urls[0]: not a URL: 'api example'",
        ),
        (
            {"inline": json.dumps({**DOCUMENT, "expiresAt": "never"})},
            "payload.manifest.inline",
            "expiresAt:",
        ),
        ({}, "payload.manifest", "exactly one of inline, configMapKeyRef or secretKeyRef"),
        (
            {"inline": INLINE, "configMapKeyRef": {"name": "m", "key": "k"}},
            "payload.manifest",
            "exactly one of inline",
        ),
        (
            {"inline": INLINE, "signature": {"inline": "AAAA"}, "certificate": {"inline": "C"}},
            "payload.manifest",
            "signature needs signatureAlgorithm",
        ),
        (
            {"inline": INLINE, "signatureAlgorithm": "sha256"},
            "payload.manifest",
            "signatureAlgorithm is only used with signature",
        ),
        (
            {"inline": INLINE, "signature": {"inline": "AAAA"}, "signatureAlgorithm": "sha256"},
            "payload.manifest",
            "signature needs certificate",
        ),
        (
            {
                "inline": INLINE,
                "signature": {"inline": "not base64!"},
                "signatureAlgorithm": "sha256",
                "certificate": {"inline": "C"},
            },
            "payload.manifest",
            "signature.inline must be base64",
        ),
        (
            {
                "inline": INLINE,
                "signature": {"inline": "AAAA"},
                "signatureAlgorithm": "SHA 256",
                "certificate": {"inline": "C"},
            },
            "payload.manifest.signatureAlgorithm",
            "should match pattern",
        ),
    ],
    ids=[
        "not-json",
        "bad-url",
        "bad-date",
        "no-source",
        "two-sources",
        "signature-without-algorithm",
        "algorithm-without-signature",
        "signature-without-certificate",
        "signature-not-base64",
        "bad-algorithm",
    ],
)
def test_a_bad_manifest_is_refused_naming_the_field(
    manifest: dict[str, Any], where: str, message: str
) -> None:
    location, text = error_of(manifest)
    assert location == where
    assert message in text


def test_the_crd_says_the_source_and_signature_rules_at_admission() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    manifest = schema["properties"]["spec"]["properties"]["payload"]["properties"]["manifest"]
    rules = {r["message"]: r["rule"] for r in manifest["x-kubernetes-validations"]}
    assert "!has(self.signature) || has(self.signatureAlgorithm)" in rules.values()
    assert "!has(self.signature) || has(self.certificate)" in rules.values()
    assert any("exactly one of inline" in m for m in rules)
    signature = manifest["properties"]["signature"]
    assert signature["x-kubernetes-validations"][0]["message"].startswith("exactly one of")


def test_the_example_manifest_is_one_providers_read() -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "outbound-service.yaml").read_text()))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    service = next(d for d in docs if d["kind"] == "GolemService")
    ref = GolemServiceSpec.model_validate(service["spec"]).payload.manifest
    assert ref is not None and ref.config_map_key_ref is not None
    content = config_map["data"][ref.config_map_key_ref.key].encode()
    published = manifest_demand(content)
    assert published.outbound_urls == ("http://127.0.0.1:8000", "https://api.github.com")
    assert published.capabilities == ("inet", "manifest-support")
