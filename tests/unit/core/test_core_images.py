"""Image resolution decisions: when to ask the registry, how its answer is judged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from core_builders import IMAGE_HASH

from golem_operator.api.spec import Image
from golem_operator.api.status import GolemServiceStatus, ImageStatus
from golem_operator.core import transactions as tx
from golem_operator.core.images import (
    DEFAULT_REGISTRY,
    ImageQuery,
    ImageResolutionError,
    ResolvedImage,
    image_source,
    parse_registry_answer,
    plan_image,
)

REGISTRY = "http://127.0.0.1:7465"
OTHER_HASH = "0" * 56
LINK = f"{REGISTRY}/download/{IMAGE_HASH}"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def image(**fields: str) -> Image:
    return Image.model_validate(fields)


def test_a_tag_is_asked_of_the_registry_as_the_sdks_ask() -> None:
    planned = plan_image(image(tag="golem/x:1"), None, REGISTRY)
    assert planned == ImageQuery("payload.image.tag", "tag", "golem/x:1", REGISTRY)
    assert isinstance(planned, ImageQuery)
    assert planned.url == f"{REGISTRY}/v1/image/info"
    assert planned.params == {"tag": "golem/x:1", "count": "true"}


def test_a_bare_hash_is_asked_by_hash_without_its_prefix() -> None:
    planned = plan_image(image(hash="sha3:" + IMAGE_HASH), None, REGISTRY)
    assert isinstance(planned, ImageQuery)
    assert planned.params == {"hash": IMAGE_HASH, "count": "true"}
    assert planned.field == "payload.image.hash"


def test_hash_and_url_need_no_registry() -> None:
    planned = plan_image(image(hash="sha3:" + IMAGE_HASH, url="http://h/x.gvmi"), None, REGISTRY)
    assert planned == ResolvedImage(IMAGE_HASH, "http://h/x.gvmi")
    assert planned.task_package == f"hash:sha3:{IMAGE_HASH}:http://h/x.gvmi"


def test_the_service_registry_wins_over_the_operator_default() -> None:
    planned = plan_image(image(tag="a/b:c", registry="https://reg.example"), None, DEFAULT_REGISTRY)
    assert isinstance(planned, ImageQuery)
    assert planned.registry == "https://reg.example"
    default = plan_image(image(tag="a/b:c"), None, DEFAULT_REGISTRY)
    assert isinstance(default, ImageQuery)
    assert default.registry == "https://registry.golem.network"


def test_a_recorded_resolution_is_reused_until_the_spec_image_changes() -> None:
    status = GolemServiceStatus()
    spec_image = image(tag="golem/x:1")
    assert tx.record_image(status, ResolvedImage(IMAGE_HASH, LINK), image_source(spec_image), T0)
    assert status.image is not None and status.image.resolved_at == T0.isoformat()
    # Same spec: the recorded bits, whatever the registry would say now.
    assert plan_image(spec_image, status.image, REGISTRY) == ResolvedImage(IMAGE_HASH, LINK)
    # Another tag, or the same tag from another registry: ask again.
    assert isinstance(plan_image(image(tag="golem/x:2"), status.image, REGISTRY), ImageQuery)
    moved = image(tag="golem/x:1", registry="https://other.example")
    assert isinstance(plan_image(moved, status.image, REGISTRY), ImageQuery)
    # Recording the same thing again is no change.
    assert not tx.record_image(
        status, ResolvedImage(IMAGE_HASH, LINK), image_source(spec_image), T0
    )


def test_the_recorded_source_names_every_field_so_a_merge_patch_replaces_it() -> None:
    assert image_source(image(tag="a/b:c")) == {
        "tag": "a/b:c",
        "hash": "",
        "url": "",
        "registry": "",
    }
    by_hash = image_source(image(hash=IMAGE_HASH, url="http://h/x"))
    assert by_hash == {"tag": "", "hash": IMAGE_HASH, "url": "http://h/x", "registry": ""}


def test_a_record_without_the_unset_fields_still_matches() -> None:
    recorded = ImageStatus(
        hash=IMAGE_HASH, url=LINK, resolved_at=T0.isoformat(), source={"tag": "golem/x:1"}
    )
    assert plan_image(image(tag="golem/x:1"), recorded, REGISTRY) == ResolvedImage(IMAGE_HASH, LINK)


def answer(**fields: object) -> str:
    return json.dumps(fields)


QUERY = ImageQuery("payload.image.tag", "tag", "golem/x:1", REGISTRY)


def test_the_registry_answer_gives_hash_and_http_link() -> None:
    body = answer(sha3=IMAGE_HASH.upper(), http=LINK, https="https://x/y", size=10)
    assert parse_registry_answer(QUERY, 200, body) == ResolvedImage(IMAGE_HASH, LINK)
    only_https = answer(sha3=IMAGE_HASH, https="https://x/y")
    assert parse_registry_answer(QUERY, 200, only_https) == ResolvedImage(IMAGE_HASH, "https://x/y")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, "image not found", 'payload.image.tag "golem/x:1" not found in registry'),
        (500, "boom", "answered 500: boom"),
        (200, "<html>", "not JSON"),
        (200, "[]", "list, not an object"),
        (200, answer(http=LINK), "no valid sha3"),
        (200, answer(sha3="xyz", http=LINK), "no valid sha3"),
        (200, answer(sha3=IMAGE_HASH), "no http(s) download link"),
        (200, answer(sha3=IMAGE_HASH, http="ftp://x/y"), "no http(s) download link"),
    ],
)
def test_bad_registry_answers_name_the_field(status: int, body: str, expected: str) -> None:
    with pytest.raises(ImageResolutionError) as caught:
        parse_registry_answer(QUERY, status, body)
    assert expected in str(caught.value)
    assert str(caught.value).startswith('payload.image.tag "golem/x:1"')


def test_an_answer_for_another_hash_is_refused() -> None:
    query = ImageQuery("payload.image.hash", "hash", IMAGE_HASH, REGISTRY)
    with pytest.raises(ImageResolutionError, match="another hash"):
        parse_registry_answer(query, 200, answer(sha3=OTHER_HASH, http=LINK))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "needs one of tag, hash or url"),
        ({"tag": "a/b:c", "hash": IMAGE_HASH}, "cannot both be set"),
        ({"url": "http://h/x"}, "url needs payload.image.hash"),
        ({"hash": IMAGE_HASH, "url": "http://h/x", "registry": "http://r"}, "registry"),
    ],
)
def test_image_forms_the_model_refuses(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Image.model_validate(fields)
