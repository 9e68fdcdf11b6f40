"""Outbound access of the simulated providers: computation manifests and their allowlists.

A provider configured with ``outbound: true`` offers the runtime capabilities ``inet`` and
``manifest-support`` (and ``golem.srv.caps.payload-manifest``), as a real provider that grants
outbound access does. When the demand of its agreement carries a manifest
(``golem.srv.comp.payload``), it reads the manifest as yagna's exe-unit does:

- at negotiation it refuses a manifest it cannot decode (base64 of a JSON object with
  ``version``, ``createdAt``, ``expiresAt`` and ``payload``), a signature without its
  algorithm or certificate or not in base64, and a manifest asking for unrestricted access
  (no ``urls``): the local network never leaves the machine;
- at deploy it grants the activity the manifest's ``compManifest.net.inet.out.urls`` whose
  scheme is among its ``protocols``, as host:port pairs (the exe-unit's own granularity). For
  each one on 127.0.0.0/8 (or ``localhost``) a listener inside the sandbox's network namespace,
  at that very address, forwards each connection to the same address on the host; so a
  process in the activity reaches exactly those. Every other destination is unreachable: the
  namespace has only its loopback device, where nothing else listens. Listed hosts off
  loopback are not granted (the local network never sends a packet off the machine).

Signatures are not verified against trusted certificates (the local network keeps no
keystore); their presence and encoding are checked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from golem_operator.localnet.netns import close_quietly, socket_in_netns

log = logging.getLogger(__name__)

P_MANIFEST = "golem.srv.comp.payload"
P_SIGNATURE = "golem.srv.comp.payload.sig"
P_SIGNATURE_ALGORITHM = "golem.srv.comp.payload.sig.algorithm"
P_CERTIFICATE = "golem.srv.comp.payload.cert"
#: What an outbound-capable provider offers (a real provider lists these among others).
OUTBOUND_CAPABILITIES = ["inet", "vpn", "manifest-support"]
PLAIN_CAPABILITIES = ["vpn"]
DEFAULT_PROTOCOLS = ("http", "https", "ws", "wss")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_RELAY_CHUNK = 65536


class ManifestRefused(ValueError):
    """The provider will not take this manifest; the message is its reason."""


@dataclass(frozen=True)
class Grant:
    """What a manifest grants an activity."""

    #: loopback (ip, port) pairs served inside the activity's namespace
    targets: tuple[tuple[str, int], ...]
    #: listed URLs that are not granted here, with the reason
    skipped: tuple[str, ...] = ()
    #: the manifest's payload as a task package (hash:<alg>:<hex>:<url>), if it names one
    task_package: str | None = None


def _decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ManifestRefused(f"Invalid manifest: {what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestRefused(f"Invalid manifest: {what} is not base64") from None


def read_manifest(properties: dict[str, Any]) -> dict[str, Any] | None:
    """The demand's manifest document, or None; ManifestRefused when it is unusable."""
    if P_MANIFEST not in properties:
        return None
    raw = _decode(properties[P_MANIFEST], P_MANIFEST)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestRefused(f"Invalid manifest: invalid manifest format: {error}") from None
    if not isinstance(document, dict):
        raise ManifestRefused("Invalid manifest: the manifest is not a JSON object")
    for key in ("version", "createdAt", "expiresAt", "payload"):
        if key not in document:
            raise ManifestRefused(f"Invalid manifest: missing field `{key}`")
    if not isinstance(document["payload"], list):
        raise ManifestRefused("Invalid manifest: `payload` must be a list")
    if P_SIGNATURE in properties:
        _decode(properties[P_SIGNATURE], P_SIGNATURE)
        algorithm = properties.get(P_SIGNATURE_ALGORITHM)
        if not isinstance(algorithm, str) or not algorithm:
            raise ManifestRefused(f"Invalid manifest: a signature needs {P_SIGNATURE_ALGORITHM}")
        if P_CERTIFICATE not in properties:
            raise ManifestRefused(f"Invalid manifest: a signature needs {P_CERTIFICATE}")
        _decode(properties[P_CERTIFICATE], P_CERTIFICATE)
    return document


def _inet_out(document: dict[str, Any]) -> dict[str, Any] | None:
    node: Any = document
    for key in ("compManifest", "net", "inet"):
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return None
    out = node.get("out") if isinstance(node, dict) else None
    return out if isinstance(out, dict) else {}


def refusal(properties: dict[str, Any]) -> str | None:
    """Why an outbound-capable provider refuses this demand's manifest, or None."""
    try:
        document = read_manifest(properties)
    except ManifestRefused as error:
        return str(error)
    if document is None:
        return None
    out = _inet_out(document)
    if out is not None and out.get("urls") is None:
        return (
            "Outbound rejected: the local network grants only the URLs a manifest lists "
            "(compManifest.net.inet.out.urls), never unrestricted access"
        )
    return None


def _loopback(host: str) -> str | None:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address) if address.version == 4 and address.is_loopback else None


def grant(properties: dict[str, Any]) -> Grant:
    """What the demand's manifest grants (nothing without one); ManifestRefused as at
    negotiation."""
    document = read_manifest(properties)
    if document is None:
        return Grant(())
    task_package = None
    for payload in document["payload"]:
        if isinstance(payload, dict) and payload.get("urls") and payload.get("hash"):
            task_package = f"hash:{payload['hash']}:{payload['urls'][0]}"
            break
    out = _inet_out(document)
    if out is None:
        return Grant((), task_package=task_package)
    protocols = out.get("protocols", list(DEFAULT_PROTOCOLS))
    targets: list[tuple[str, int]] = []
    skipped: list[str] = []
    for url in out.get("urls") or []:
        try:
            parts = urlsplit(str(url))
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            skipped.append(f"{url}: not a URL")
            continue
        if parts.scheme not in protocols:
            skipped.append(f"{url}: {parts.scheme} is not among the protocols {protocols}")
            continue
        ip = _loopback(parts.hostname or "")
        if ip is None or port is None:
            skipped.append(f"{url}: only loopback targets are reachable from the local network")
            continue
        if (ip, port) not in targets:
            targets.append((ip, port))
    return Grant(tuple(targets), tuple(skipped), task_package)


@dataclass
class Gateway:
    """One activity's granted targets: a listener per target inside its namespace."""

    servers: list[asyncio.Server] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    relays: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self, namespace_pid: int, granted: Grant) -> None:
        for ip, port in granted.targets:
            sock = await asyncio.to_thread(socket_in_netns, namespace_pid)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, port))
                sock.setblocking(False)
                server = await asyncio.start_server(
                    functools.partial(self._relay, target=(ip, port)), sock=sock
                )
            except BaseException:
                close_quietly(sock)
                raise
            self.servers.append(server)
            self.targets.append(f"{ip}:{port}")

    def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        target: tuple[str, int],
    ) -> None:
        task = asyncio.ensure_future(_forward(reader, writer, *target))
        self.relays.add(task)
        task.add_done_callback(self.relays.discard)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.relays):
            task.cancel()
        for task in list(self.relays):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, port: int
) -> None:
    """One connection from the activity, relayed to ip:port on the host."""
    try:
        target_reader, target_writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port), timeout=10
        )
    except (OSError, TimeoutError):
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
    finally:
        for stream in (writer, target_writer):
            stream.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(_RELAY_CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()
