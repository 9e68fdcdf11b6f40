"""Which image bits a service deploys. Pure.

The Golem SDKs name an image by a registry tag, by its hash, or by a hash and a URL; a real
provider's exe-unit only accepts ``hash:sha3:<hex>:<url>`` (it downloads the URL and verifies
the hash). So a tag, or a hash without a URL, is first resolved through the Golem image
registry: ``GET {registry}/v1/image/info?tag=...`` (or ``?hash=...``) answers
``{"sha3": ..., "http": ..., "https": ..., "size": ...}``. ``plan_image`` decides whether the
registry must be asked (only when spec.payload.image differs from what status.image recorded,
so replacements and renewals deploy the same bits even if a tag moved); ``parse_registry_answer``
judges the registry's answer. The HTTP call itself is in ``requestor.images``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from golem_operator.api.spec import Image
from golem_operator.api.status import ImageStatus

DEFAULT_REGISTRY = "https://registry.golem.network"
_HEX = re.compile(r"^[0-9a-f]{56,128}$")
_URL = re.compile(r"^https?://\S+$")


class ImageResolutionError(Exception):
    """The image cannot be resolved; the message names the spec field."""


@dataclass(frozen=True)
class ResolvedImage:
    hash: str
    url: str

    @property
    def task_package(self) -> str:
        """`golem.srv.comp.task_package` as a real exe-unit accepts it."""
        return f"hash:sha3:{self.hash}:{self.url}"


@dataclass(frozen=True)
class ImageQuery:
    """One question to the image registry."""

    field: str  # the spec field resolved, e.g. payload.image.tag
    key: str  # tag or hash
    value: str
    registry: str

    @property
    def url(self) -> str:
        return f"{self.registry.rstrip('/')}/v1/image/info"

    @property
    def params(self) -> dict[str, str]:
        # The SDKs send count=true so that the registry counts the download (dev=true skips it).
        return {self.key: self.value, "count": "true"}

    def describe(self) -> str:
        return f'{self.field} "{self.value}"'


#: Every field of spec.payload.image, always present in status.image.source: status is written
#: as a JSON merge patch, which would keep a key that a smaller map left out.
SOURCE_FIELDS = ("tag", "hash", "url", "registry")


def image_source(image: Image) -> dict[str, str]:
    """The spec's image as recorded in status.image.source ("" for an unset field)."""
    return {name: getattr(image, name) or "" for name in SOURCE_FIELDS}


def _same_source(recorded: dict[str, str], current: dict[str, str]) -> bool:
    # A key left out (an older record) is an unset field.
    keys = set(recorded) | set(current)
    return all(recorded.get(k, "") == current.get(k, "") for k in keys)


def _bare_hash(value: str) -> str:
    return value.removeprefix("sha3:")


def plan_image(
    image: Image, recorded: ImageStatus | None, default_registry: str
) -> ResolvedImage | ImageQuery:
    """The recorded image if the spec still names it; else the image itself or a registry query."""
    if recorded is not None and _same_source(recorded.source, image_source(image)):
        return ResolvedImage(recorded.hash, recorded.url)
    if image.url and image.hash:
        return ResolvedImage(_bare_hash(image.hash), image.url)
    registry = image.registry or default_registry
    if image.tag:
        return ImageQuery("payload.image.tag", "tag", image.tag, registry)
    if image.hash:
        return ImageQuery("payload.image.hash", "hash", _bare_hash(image.hash), registry)
    raise ImageResolutionError("payload.image needs one of tag, hash or url")


def parse_registry_answer(query: ImageQuery, status: int, body: str) -> ResolvedImage:
    """The registry's answer to ``query``, or an error naming the field and what went wrong."""
    where = f"registry {query.registry}"
    if status == 404:
        return _fail(f"{query.describe()} not found in {where}")
    if status != 200:
        return _fail(f"{query.describe()}: {where} answered {status}: {_snippet(body)}")
    try:
        answer = json.loads(body)
    except ValueError:
        return _fail(f"{query.describe()}: {where} answered something that is not JSON")
    if not isinstance(answer, dict):
        return _fail(f"{query.describe()}: {where} answered {type(answer).__name__}, not an object")
    digest = answer.get("sha3")
    if not isinstance(digest, str) or not _HEX.match(digest.lower()):
        return _fail(f"{query.describe()}: {where} gave no valid sha3 hash")
    digest = digest.lower()
    if query.key == "hash" and digest != query.value.lower():
        return _fail(f"{query.describe()}: {where} answered for another hash ({digest})")
    # The SDKs download over http unless asked otherwise; https is the fallback.
    for key in ("http", "https"):
        link = answer.get(key)
        if isinstance(link, str) and _URL.match(link):
            return ResolvedImage(digest, link)
    return _fail(f"{query.describe()}: {where} gave no http(s) download link")


def _fail(message: str) -> ResolvedImage:
    raise ImageResolutionError(message)


def _snippet(body: str) -> str:
    text = " ".join(body.split())
    return (text[:200] + "…") if len(text) > 200 else (text or "(empty body)")
