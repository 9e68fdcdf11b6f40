"""A computation manifest as the demand publishes it. Pure.

Called by the service worker once it has read ``spec.payload.manifest`` and its signature and
certificate from wherever they come from; ``core.market.build_demand`` adds the result to the
demand. The properties are the Golem SDKs' (yapapi's ``vm.manifest``, golem-js):
``golem.srv.comp.payload`` (base64 of the manifest), ``golem.srv.comp.payload.sig`` (base64 of
the signature), ``golem.srv.comp.payload.sig.algorithm`` and ``golem.srv.comp.payload.cert``
(base64 of the certificate); the constraints ask for the runtime capabilities a provider needs
to honour it: ``manifest-support``, and ``inet`` when it asks for outbound access.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from golem_operator.api.manifest import (
    ManifestError,
    decode_base64_text,
    manifest_json,
    read_manifest,
)

P_MANIFEST = "golem.srv.comp.payload"
P_SIGNATURE = "golem.srv.comp.payload.sig"
P_SIGNATURE_ALGORITHM = "golem.srv.comp.payload.sig.algorithm"
P_CERTIFICATE = "golem.srv.comp.payload.cert"
CAP_MANIFEST = "manifest-support"
CAP_INET = "inet"


@dataclass(frozen=True)
class ManifestDemand:
    """What a manifest adds to a demand."""

    properties: dict[str, str]
    #: golem.runtime.capabilities the provider must offer
    capabilities: tuple[str, ...]
    #: the outbound URLs it allows (None: unrestricted; empty when it asks for no inet)
    outbound_urls: tuple[str, ...] | None


def as_base64(content: bytes) -> str:
    """Base64 text as given (whitespace removed), anything else base64-encoded."""
    if decode_base64_text(content) is not None:
        return b"".join(content.split()).decode()
    return base64.b64encode(content).decode()


def manifest_demand(
    manifest: bytes,
    *,
    signature: bytes | None = None,
    algorithm: str | None = None,
    certificate: bytes | None = None,
) -> ManifestDemand:
    """The demand properties and capabilities of a manifest; ManifestError naming the field
    (``signature``, ``certificate``, or one inside the manifest) when providers could not use
    it."""
    document = read_manifest(manifest)
    if manifest_json(manifest) is manifest:
        # The exact bytes: a signature over `base64 -w0 manifest.json` must still match.
        encoded = base64.b64encode(manifest).decode()
    else:
        encoded = b"".join(manifest.split()).decode()
    properties = {P_MANIFEST: encoded}
    if (signature is None) != (algorithm is None) or (signature is None) != (certificate is None):
        raise ManifestError("signature, signatureAlgorithm and certificate go together")
    if signature is not None and algorithm is not None and certificate is not None:
        if not signature.strip():
            raise ManifestError("signature: empty")
        if not certificate.strip():
            raise ManifestError("certificate: empty")
        properties[P_SIGNATURE] = as_base64(signature)
        properties[P_SIGNATURE_ALGORITHM] = algorithm
        properties[P_CERTIFICATE] = as_base64(certificate)
    capabilities = [CAP_MANIFEST]
    outbound = document.outbound
    if document.asks_inet:
        capabilities.insert(0, CAP_INET)
    if outbound is None:
        urls: tuple[str, ...] | None = ()
    else:
        urls = tuple(outbound.urls) if outbound.urls is not None else None
    return ManifestDemand(properties, tuple(capabilities), urls)
