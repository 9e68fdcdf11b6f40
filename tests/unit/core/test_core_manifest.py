"""A computation manifest in the demand: the SDKs' properties, encodings and capabilities."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from core_builders import IMAGE_HASH, T0, make_spec

from golem_operator.api.manifest import ManifestError
from golem_operator.core.images import ResolvedImage
from golem_operator.core.manifest import (
    P_CERTIFICATE,
    P_MANIFEST,
    P_SIGNATURE,
    P_SIGNATURE_ALGORITHM,
    as_base64,
    manifest_demand,
)
from golem_operator.core.market import build_demand, demand_changed
from golem_operator.core.revision import revision

IMAGE = ResolvedImage(IMAGE_HASH, "http://127.0.0.1:8000/download/" + IMAGE_HASH)
CERT = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ\n-----END CERTIFICATE-----\n"
SIGNATURE = bytes(range(256))  # raw signature bytes, as `openssl dgst -sign` writes them


def document(out: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": "0.1.0",
        "createdAt": "2025-01-01T00:00:00Z",
        "expiresAt": "2100-01-01T00:00:00Z",
        "payload": [],
    }
    if out is not None:
        doc["compManifest"] = {"version": "0.1.0", "net": {"inet": {"out": out}}}
    doc.update(extra)
    return doc


MANIFEST = json.dumps(
    document({"protocols": ["https"], "urls": ["https://api.example.com/v1"]}), indent=2
).encode()


def demand(manifest: dict[str, Any] | None = None, **payload: Any) -> tuple[dict[str, Any], str]:
    spec = make_spec(payload={"image": {"hash": IMAGE_HASH}, **payload})
    published = manifest_demand(**manifest) if manifest else None
    built = build_demand(spec, image=IMAGE, now=T0, node_name="n", manifest=published)
    return built.properties, built.constraints


def test_the_manifest_is_published_as_the_base64_of_its_exact_bytes() -> None:
    properties, constraints = demand({"manifest": MANIFEST})
    assert properties[P_MANIFEST] == base64.b64encode(MANIFEST).decode()
    # Unsigned: no signature properties at all (yapapi leaves them out too).
    assert not {P_SIGNATURE, P_SIGNATURE_ALGORITHM, P_CERTIFICATE} & set(properties)
    # The image is still named: providers deploy the task package.
    assert properties["golem.srv.comp.task_package"] == IMAGE.task_package
    assert "(golem.runtime.capabilities=inet)" in constraints
    assert "(golem.runtime.capabilities=manifest-support)" in constraints


def test_a_trailing_newline_is_kept_so_that_a_signature_over_the_file_still_matches() -> None:
    with_newline = MANIFEST + b"\n"
    properties, _ = demand({"manifest": with_newline})
    assert base64.b64decode(properties[P_MANIFEST]) == with_newline


def test_a_manifest_given_as_base64_is_published_as_it_is() -> None:
    encoded = base64.b64encode(MANIFEST)
    wrapped = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\n"
    properties, _ = demand({"manifest": wrapped})
    assert properties[P_MANIFEST] == encoded.decode()


def test_a_signed_manifest_publishes_signature_algorithm_and_certificate() -> None:
    properties, _ = demand(
        {
            "manifest": MANIFEST,
            "signature": SIGNATURE,
            "algorithm": "sha256",
            "certificate": CERT,
        }
    )
    assert base64.b64decode(properties[P_SIGNATURE]) == SIGNATURE
    assert properties[P_SIGNATURE_ALGORITHM] == "sha256"
    assert base64.b64decode(properties[P_CERTIFICATE]) == CERT


def test_base64_text_is_taken_as_encoded_anything_else_is_encoded() -> None:
    encoded = base64.b64encode(SIGNATURE).decode()
    assert as_base64(encoded.encode()) == encoded
    assert as_base64(encoded.encode() + b"\n") == encoded
    assert as_base64(SIGNATURE) == encoded
    assert base64.b64decode(as_base64(CERT)) == CERT  # PEM has dashes: not base64


def test_capabilities_are_not_repeated_and_payload_capabilities_stay() -> None:
    _, constraints = demand({"manifest": MANIFEST}, capabilities=["vpn", "inet"])
    clauses = [c for c in constraints.split(")(") if "golem.runtime.capabilities" in c]
    assert sorted(c.strip("()&") for c in clauses) == [
        "golem.runtime.capabilities=inet",
        "golem.runtime.capabilities=manifest-support",
        "golem.runtime.capabilities=vpn",
    ]


def test_a_manifest_without_inet_asks_only_for_manifest_support() -> None:
    published = manifest_demand(json.dumps(document()).encode())
    assert published.capabilities == ("manifest-support",)
    assert published.outbound_urls == ()


def test_a_manifest_without_urls_asks_for_unrestricted_access() -> None:
    published = manifest_demand(json.dumps(document({})).encode())
    assert published.capabilities == ("inet", "manifest-support")
    assert published.outbound_urls is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({k: v for k, v in document().items() if k != "payload"}), "payload: Field"),
        (json.dumps(document(version="one")), "version: not a semantic version"),
        (json.dumps(document(createdAt="yesterday")), "createdAt:"),
        (
            json.dumps(document({"urls": ["https://ok.example", "example.com"]})),
            "compManifest.net.inet.out.urls[1]: not a URL: 'example.com'",
        ),
        (
            json.dumps(document({"urls": ["gopher:///nohost"]})),
            "compManifest.net.inet.out.urls[0]: not a URL",
        ),
        (
            json.dumps(document({"urls": ["custom://host/x"]})),
            "needs a port: custom has no default one",
        ),
        (
            json.dumps(document({"protocols": ["HTTP!"], "urls": []})),
            "compManifest.net.inet.out.protocols: not a protocol name",
        ),
        (
            json.dumps(document(payload=[{"urls": ["x"], "hash": "sha3:00"}])),
            "payload[0].urls: not a URL",
        ),
    ],
    ids=[
        "not-json",
        "not-object",
        "no-payload",
        "bad-version",
        "bad-date",
        "url",
        "url-without-host",
        "url-without-port",
        "protocol",
        "payload-url",
    ],
)
def test_a_manifest_providers_would_not_read_is_refused_naming_the_field(
    content: bytes | str, message: str
) -> None:
    raw = content.encode() if isinstance(content, str) else content
    with pytest.raises(ManifestError) as caught:
        manifest_demand(raw)
    assert message in str(caught.value)


def test_a_signature_needs_its_algorithm_and_certificate() -> None:
    with pytest.raises(ManifestError, match="go together"):
        manifest_demand(MANIFEST, signature=SIGNATURE, certificate=CERT)
    with pytest.raises(ManifestError, match=r"^signature: empty"):
        manifest_demand(MANIFEST, signature=b" \n", algorithm="sha256", certificate=CERT)


def test_a_manifest_change_publishes_a_new_demand_and_makes_a_new_revision() -> None:
    without = make_spec()
    inline = {"inline": MANIFEST.decode()}
    with_manifest = make_spec(payload={"image": {"hash": IMAGE_HASH}, "manifest": inline})
    assert demand_changed(without, with_manifest)
    assert revision(without) != revision(with_manifest)


def test_services_without_a_manifest_keep_their_revision() -> None:
    # Pinned from the revisions recorded before payload.manifest existed: an operator upgrade
    # must not roll every service out.
    assert revision(make_spec()) == "83013d1dd7"
    spec = make_spec(
        payload={"image": {"hash": IMAGE_HASH}, "capabilities": ["vpn"]},
        lifecycle={"run": {"intervalSeconds": 5}},
    )
    assert revision(spec) == "922df890b3"
