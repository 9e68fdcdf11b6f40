"""The local network's image registry and deploy, over HTTP, as an SDK and a provider see them."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from golem_operator.localnet import LocalNetwork
from localnet_fixture import exec_and_wait, localnet, negotiate, yagna

__all__ = ["localnet", "yagna"]

TAG = "simple-service"


async def test_registry_answers_as_the_golem_registry(localnet: LocalNetwork) -> None:
    # Public, like registry.golem.network: no app key.
    async with httpx.AsyncClient(base_url=str(localnet.url)) as client:
        by_tag = await client.get("/v1/image/info", params={"tag": TAG, "count": "true"})
        assert by_tag.status_code == 200, by_tag.text
        info = by_tag.json()
        by_hash = await client.get("/v1/image/info", params={"hash": info["sha3"], "dev": "true"})
        missing = await client.get("/v1/image/info", params={"tag": "nope:1"})
        both = await client.get("/v1/image/info", params={"tag": TAG, "hash": info["sha3"]})
        package = await client.get(info["http"])
    assert set(info) >= {"sha3", "http", "https", "size"}
    assert info["http"].startswith(f"{localnet.url}/")
    assert by_hash.json()["sha3"] == info["sha3"]
    assert missing.status_code == 404
    assert both.status_code == 400
    assert package.status_code == 200
    assert len(package.content) == info["size"]
    assert hashlib.sha3_224(package.content).hexdigest() == info["sha3"]


async def _deploy(client: httpx.AsyncClient, task_package: str) -> dict[str, object]:
    deal = await negotiate(client, extra={"golem.srv.comp.task_package": task_package})
    created = await client.post(
        "/activity-api/v1/activity", json={"agreementId": deal.agreement_id}
    )
    activity_id = created.json()["activityId"]
    results = await exec_and_wait(client, activity_id, [{"deploy": {}}, {"start": {}}])
    await client.delete(f"/activity-api/v1/activity/{activity_id}")
    return results[0]


async def test_deploy_takes_hash_and_url_and_verifies_the_download(
    yagna: httpx.AsyncClient, localnet: LocalNetwork
) -> None:
    info = (await yagna.get("/v1/image/info", params={"tag": TAG})).json()
    good = await _deploy(yagna, f"hash:sha3:{info['sha3']}:{info['http']}")
    assert good["result"] == "Ok", good
    # A hash the downloaded bytes do not have: the exe-unit's corruption error.
    wrong = "0" * 56
    bad = await _deploy(yagna, f"hash:sha3:{wrong}:{info['http']}")
    assert bad["result"] == "Error"
    assert bad["message"] == (
        "Incorrect hash provided or downloaded image is corrupted: calculated hash "
        f"{info['sha3']} differs from the expected one {wrong}"
    )


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ("tag:simple-service", "Invalid url: Missing hash"),
        ("url:{http}", "Invalid url: Missing hash"),
        ("hash:sha3:{sha3}:", "Invalid url: hash:sha3:{sha3}:"),
    ],
)
async def test_deploy_refuses_what_a_real_exe_unit_refuses(
    yagna: httpx.AsyncClient, form: str, message: str
) -> None:
    info = (await yagna.get("/v1/image/info", params={"tag": TAG})).json()
    result = await _deploy(yagna, form.format(**info))
    assert result["result"] == "Error"
    assert result["message"] == message.format(**info)
