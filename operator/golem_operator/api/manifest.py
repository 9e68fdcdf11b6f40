"""The Golem computation manifest: the document a GolemService's ``payload.manifest`` carries.

A computation manifest (GAP-4; read by yagna's ya-manifest-utils) names the payload, the
commands a requestor may run and, under ``compManifest.net.inet.out``, the outbound
internet access it asks of a provider: ``protocols`` (default http, https, ws, wss) and the
allowed ``urls`` (absent: unrestricted). ``read_manifest`` checks a document's shape as a
provider would decode it and names the first bad field, e.g.
``compManifest.net.inet.out.urls[1]: not a URL: 'example'``.

Called by ``api.spec`` (an inline manifest is checked when the spec is read) and by
``core.manifest`` (every manifest, whatever its source, before it is published).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: What a provider's exe-unit assumes when ``protocols`` is absent (ya-manifest-utils).
DEFAULT_PROTOCOLS = ("http", "https", "ws", "wss")
#: Ports of the schemes a URL may leave out (the url crate's known defaults).
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


class ManifestError(ValueError):
    """A manifest that providers would not read; the message names the field in it."""


class _Part(BaseModel):
    # Fields unknown here are kept: later manifest versions add them, and providers ignore
    # what they do not know (serde's default).
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


def _semver(value: str) -> str:
    if not _SEMVER.match(value):
        raise ValueError(f"not a semantic version (e.g. 0.1.0): {value!r}")
    return value


def check_url(value: str) -> str:
    """An absolute URL with a scheme and a host, as the exe-unit resolves it."""
    problem = f"not a URL: {value[:200]!r} (expected scheme://host[:port][/path])"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if not _SCHEME.match(parts.scheme) or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(problem)
    if port is None and parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{value[:200]!r} needs a port: {parts.scheme} has no default one")
    return value


class PayloadPlatform(_Part):
    arch: str
    os: str
    os_version: str | None = Field(None, alias="osVersion")


class AppPayload(_Part):
    platform: PayloadPlatform | None = None
    urls: list[str]
    hash: str

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            check_url(url)
        return urls


class AppMetadata(_Part):
    name: str
    description: str | None = None
    version: str | None = None


class Script(_Part):
    commands: list[str | dict[str, Any]]
    match: str = Field("strict", pattern=r"^(?i:strict|regex)$")


class InetOut(_Part):
    protocols: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTOCOLS))
    #: None: unrestricted access (the manifest lists no URLs).
    urls: list[str] | None = None

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, protocols: list[str]) -> list[str]:
        for protocol in protocols:
            if not _SCHEME.match(protocol):
                raise ValueError(f"not a protocol name: {protocol[:100]!r}")
        return protocols

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str] | None) -> list[str] | None:
        for index, url in enumerate(urls or []):
            try:
                check_url(url)
            except ValueError as error:
                # pydantic would name only the list: the index is part of the message.
                raise ValueError(f"[{index}]: {error}") from None
        return urls


class Inet(_Part):
    out: InetOut | None = None


class Net(_Part):
    inet: Inet | None = None


class CompManifest(_Part):
    version: str
    script: Script | None = None
    net: Net | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return _semver(value)


class ComputationManifest(_Part):
    """The manifest document (ya-manifest-utils ``AppManifest``)."""

    version: str
    created_at: datetime = Field(alias="createdAt")
    expires_at: datetime = Field(alias="expiresAt")
    metadata: AppMetadata | None = None
    payload: list[AppPayload]
    comp_manifest: CompManifest | None = Field(None, alias="compManifest")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return _semver(value)

    @property
    def outbound(self) -> InetOut | None:
        """The outbound access it asks for, if any."""
        comp = self.comp_manifest
        if comp is None or comp.net is None or comp.net.inet is None:
            return None
        return comp.net.inet.out or InetOut()

    @property
    def asks_inet(self) -> bool:
        comp = self.comp_manifest
        return comp is not None and comp.net is not None and comp.net.inet is not None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def decode_base64_text(text: bytes) -> bytes | None:
    """The bytes behind base64 text (whitespace ignored), or None when it is not base64."""
    compact = b"".join(text.split())
    if not compact or len(compact) % 4:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def manifest_json(content: bytes) -> bytes:
    """The manifest's JSON bytes: the content itself, or what its base64 text encodes."""
    if content.lstrip()[:1] == b"{":
        return content
    decoded = decode_base64_text(content)
    if decoded is not None and decoded.lstrip()[:1] == b"{":
        return decoded
    return content


def read_manifest(content: bytes) -> ComputationManifest:
    """Parse and check a manifest given as JSON or as the base64 of its JSON."""
    data = manifest_json(content)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"not valid JSON (nor base64 of JSON): {error}") from None
    if not isinstance(document, dict):
        raise ManifestError("the manifest must be a JSON object")
    try:
        return ComputationManifest.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        where = _path(tuple(first["loc"]))
        if message.startswith("["):  # an index the validator added (see InetOut._urls)
            index, _, message = message.partition(": ")
            where += index
        raise ManifestError(f"{where}: {message}") from None
