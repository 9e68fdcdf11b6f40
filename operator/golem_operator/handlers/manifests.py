"""``spec.payload.manifest``: the manifest, its signature and certificate, read from where the
spec says (inline, a ConfigMap key, a Secret key) and checked for the demand.

Called by the service worker before it publishes a demand. As for uploads, only objects in
the service's own namespace are read, and only Secrets labelled
``services.golem.network/upload: "true"`` (what they hold is published in the demand, to every
provider on the market); their content is taught to the worker's redactor, so it never shows
in status, Events or logs. Errors name the field and the object, never the content.
"""

from __future__ import annotations

import re

from golem_operator.api.manifest import ManifestError
from golem_operator.api.spec import KeyRef, Manifest, ManifestPart
from golem_operator.core.manifest import ManifestDemand, manifest_demand
from golem_operator.core.redaction import MARKER
from golem_operator.handlers.host import InstanceHost
from golem_operator.handlers.uploads import UploadError, read_secret

FIELD = "spec.payload.manifest"
#: A value quoted in a manifest error (Python's repr, either quote).
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


class ManifestSourceError(Exception):
    """The manifest cannot be read or would not be understood; the message names the field."""


def _where(field: str, source: Manifest | ManifestPart) -> str:
    """The field path of the source in use, with the object it names."""
    if source.config_map_key_ref is not None:
        ref = source.config_map_key_ref
        return f"{field}.configMapKeyRef (ConfigMap {ref.name!r} key {ref.key!r})"
    if source.secret_key_ref is not None:
        ref = source.secret_key_ref
        return f"{field}.secretKeyRef (Secret {ref.name!r} key {ref.key!r})"
    return f"{field}.inline"


async def _read(worker: InstanceHost, source: Manifest | ManifestPart, field: str) -> bytes:
    if source.inline is not None:
        return source.inline.encode()
    ref: KeyRef | None = source.config_map_key_ref
    if ref is not None:
        try:
            return await worker.kube.read_config_map_key(worker.namespace, ref.name, ref.key)
        except KeyError:
            raise ManifestSourceError(
                f"{field}.configMapKeyRef: ConfigMap {ref.name!r} has no key {ref.key!r}"
            ) from None
        except Exception as error:
            status = getattr(error, "status", None)
            raise ManifestSourceError(
                f"{field}.configMapKeyRef: cannot read ConfigMap {ref.name!r} "
                f"({status or type(error).__name__})"
            ) from None
    ref = source.secret_key_ref
    assert ref is not None  # the spec holds exactly one source
    try:
        return await read_secret(worker, ref.name, ref.key, f"{field}.secretKeyRef")
    except UploadError as error:
        raise ManifestSourceError(str(error)) from None


async def resolve(worker: InstanceHost, manifest: Manifest) -> ManifestDemand:
    """The manifest's demand properties and capabilities, from its sources."""
    content = await _read(worker, manifest, FIELD)
    signature = certificate = None
    if manifest.signature is not None:
        signature = await _read(worker, manifest.signature, f"{FIELD}.signature")
    if manifest.certificate is not None:
        certificate = await _read(worker, manifest.certificate, f"{FIELD}.certificate")
    try:
        return manifest_demand(
            content,
            signature=signature,
            algorithm=manifest.signature_algorithm,
            certificate=certificate,
        )
    except ManifestError as error:
        text = str(error)
        if any(
            part is not None and part.secret_key_ref is not None
            for part in (manifest, manifest.signature, manifest.certificate)
        ):
            # Values quoted from a Secret's manifest stay out of the message.
            text = _QUOTED.sub(MARKER, text)
        for part, name in (
            (manifest.signature, "signature"),
            (manifest.certificate, "certificate"),
        ):
            if part is not None and text.startswith(f"{name}:"):
                where = _where(f"{FIELD}.{name}", part)
                raise ManifestSourceError(f"{where}: {text.partition(': ')[2]}") from None
        raise ManifestSourceError(f"{_where(FIELD, manifest)}: {text}") from None


async def remember_secrets(worker: InstanceHost, manifest: Manifest | None) -> None:
    """Teach the redactor the manifest's Secret content (after a restart, before anything
    could show it)."""
    if manifest is None:
        return
    for source in (manifest, manifest.signature, manifest.certificate):
        if source is not None and source.secret_key_ref is not None:
            ref = source.secret_key_ref
            try:
                await read_secret(worker, ref.name, ref.key, FIELD)
            except UploadError:
                continue  # reported when the demand is published
