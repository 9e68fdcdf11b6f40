"""The local network's images: packages, the image registry's answers, and deploy's checks.

An image is a folder (config `images[]: {tag, path}`); its *package* is a deterministic tar of
that folder, and its hash is the sha3-224 of the package, as `gvmkit-build` publishes a .gvmi
file's. The server answers the Golem image registry's `GET /v1/image/info?tag=|hash=` with
`{"sha3", "http", "https", "size", "tag"}` and serves each package at `GET /download/<hash>`
on loopback. A provider's deploy accepts only what a real exe-unit accepts
(`hash:<alg>:<hex>:<url>`, parsed as yagna's exe-unit `TransferUrl::parse_with_hash` does),
downloads the URL (loopback only), verifies the hash and maps it to the image's folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from golem_operator.localnet.config import ImageConfig

#: The exe-unit's pattern (exe-unit/components/transfer/src/location.rs, parse_hash).
_HASH_LOCATION = re.compile(r"hash:(//)?([^:]+):(0x)?([a-f0-9]+):(.+)", re.IGNORECASE)
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: sha3 digests by hex length.
_SHA3 = {56: hashlib.sha3_224, 64: hashlib.sha3_256, 96: hashlib.sha3_384, 128: hashlib.sha3_512}
DOWNLOAD_PATH = "/download"


class DeployError(Exception):
    """Deploy refused; the text is what the exe-unit would report."""


def package_bytes(folder: Path) -> bytes:
    """A tar of the folder that depends on its files only (names, modes, contents)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            elif info.isdir() or info.issym():
                tar.addfile(info)
    return buffer.getvalue()


@dataclass
class ImageEntry:
    tag: str
    path: Path
    package: bytes
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.hash = hashlib.sha3_224(self.package).hexdigest()


@dataclass(frozen=True)
class TaskPackage:
    algorithm: str
    digest: str
    url: str


def parse_task_package(text: str) -> TaskPackage:
    """`golem.srv.comp.task_package` as the exe-unit's deploy reads it, or its error text."""
    text = text.strip()
    if not text:
        raise DeployError("Invalid url: Empty URL")
    match = _HASH_LOCATION.search(text)
    if match is None:
        if text.startswith("hash:"):
            raise DeployError(f"Invalid url: {text}")
        # Without a hash the location itself may parse, but deploy needs the hash.
        raise DeployError("Invalid url: Missing hash")
    digest = match.group(4)
    if len(digest) % 2:
        raise DeployError("Hex error: Odd number of digits")
    url = match.group(5)
    if _URL_SCHEME.match(url) is None:
        raise DeployError(f"Invalid url: {url}")
    return TaskPackage(match.group(2).lower(), digest.lower(), url)


def _loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ImageCatalog:
    """Every image by hash, the registry's tags, and the packages providers downloaded."""

    def __init__(self, images: list[ImageConfig]) -> None:
        self.entries: dict[str, ImageEntry] = {}
        self.tags: dict[str, str] = {}
        for image in images:
            entry = ImageEntry(image.tag, image.path, package_bytes(image.path))
            # Two tags of one folder are one image (the first tag names it).
            entry = self.entries.setdefault(entry.hash, entry)
            self.tags[image.tag] = entry.hash
        #: The server's base URL (set once it listens): download links point there.
        self.base_url = ""
        self._verified: dict[tuple[str, str], asyncio.Future[ImageEntry]] = {}

    def link(self, digest: str) -> str:
        return f"{self.base_url}{DOWNLOAD_PATH}/{digest}"

    def task_package(self, digest: str) -> str:
        return f"hash:sha3:{digest}:{self.link(digest)}"

    def lookup(self, tag: str | None = None, digest: str | None = None) -> ImageEntry | None:
        if tag is not None:
            digest = self.tags.get(tag)
        return self.entries.get((digest or "").lower())

    def info(self, entry: ImageEntry, tag: str | None = None) -> dict[str, object]:
        """The registry's answer for an image."""
        link = self.link(entry.hash)
        return {
            "tag": tag or entry.tag,
            "sha3": entry.hash,
            "http": link,
            # Loopback has no TLS: the https link is the same http one.
            "https": link,
            "size": len(entry.package),
        }

    def retag(self, tag: str, digest: str) -> None:
        """Point a registry tag at another image (as pushing a new build under a tag does)."""
        if digest not in self.entries:
            raise KeyError(digest)
        self.tags[tag] = digest

    async def deploy(self, task_package: object) -> ImageEntry:
        """The image a deploy runs: parsed, downloaded, verified; or DeployError."""
        if not isinstance(task_package, str):
            raise DeployError("Invalid url: Missing hash")
        package = parse_task_package(task_package)
        hasher = _SHA3.get(len(package.digest)) if package.algorithm == "sha3" else None
        if hasher is None:
            raise DeployError(f"Unsupported digest: {package.algorithm}")
        key = (package.url, package.digest)
        future = self._verified.get(key)
        if future is None or (
            future.done() and (future.cancelled() or future.exception() is not None)
        ):
            # One download per package, shared by the deploys that ask meanwhile; a verified
            # package is kept (the exe-unit caches images by hash too), a failure is not.
            future = asyncio.get_running_loop().create_future()
            self._verified[key] = future
            try:
                entry = await self._download(package, hasher)
            except DeployError as error:
                future.set_exception(error)
                future.exception()  # marked retrieved: the waiters get it, nobody else
                raise
            except BaseException:
                future.cancel()
                raise
            future.set_result(entry)
            return entry
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise DeployError("Cancelled") from None
            raise

    async def _download(self, package: TaskPackage, hasher: object) -> ImageEntry:
        scheme = urlsplit(package.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise DeployError(f"Unsupported scheme: {scheme}")
        if not _loopback(package.url):
            # A local network never leaves the machine.
            raise DeployError(
                "HTTP error: connection error: the local network downloads images only "
                f"from 127.0.0.0/8, not {urlsplit(package.url).hostname}"
            )
        try:
            async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
                response = await client.get(package.url)
        except httpx.HTTPError as error:
            raise DeployError(f"HTTP error: connection error: {error}") from None
        if response.status_code != 200:
            kind = "client" if response.status_code < 500 else "server"
            raise DeployError(f"HTTP error: {kind} error: {response.status_code}")
        calculated = hasher(response.content).hexdigest()  # type: ignore[operator]
        if calculated != package.digest:
            raise DeployError(
                "Incorrect hash provided or downloaded image is corrupted: calculated hash "
                f"{calculated} differs from the expected one {package.digest}"
            )
        entry = self.entries.get(hashlib.sha3_224(response.content).hexdigest())
        if entry is None:
            raise DeployError(f"Unknown image: {package.digest} is none of the local network's")
        return entry
