"""The local network end to end: market negotiation, real sandboxed execution, teardown."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from golem_operator.localnet import LocalNetwork
from localnet_fixture import (
    exec_and_wait,
    localnet,
    localnet_config,
    negotiate,
    running_activity,
    yagna,
)

__all__ = ["localnet", "yagna"]

RUN = "/golem/run"


def run(entry_point: str, *args: str) -> dict[str, object]:
    return {
        "run": {
            "entry_point": entry_point,
            "args": list(args),
            "capture": {"stdout": {"atEnd": {}}, "stderr": {"atEnd": {}}},
        }
    }


async def test_app_key_is_required(localnet: LocalNetwork) -> None:
    async with httpx.AsyncClient(base_url=str(localnet.url)) as client:
        missing = await client.get("/me")
        wrong = await client.get("/me", headers={"Authorization": "Bearer nope"})
        admin = await client.get("/_localnet/audit")
    # Plain text, as yagna answers (test_daemon_wire_contract.py checks /me on both daemons).
    assert (missing.status_code, missing.text) == (401, "Missing application key")
    assert (wrong.status_code, wrong.text) == (401, "Invalid application key")
    assert (admin.status_code, admin.text) == (401, "Missing application key")
    assert localnet.app_key not in repr(localnet)


async def test_service_lifecycle_runs_for_real_in_the_sandbox(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    state = (await yagna.get(f"/activity-api/v1/activity/{activity_id}/state")).json()
    assert state["state"] == ["Ready", None]

    started = await exec_and_wait(
        yagna,
        activity_id,
        [run(f"{RUN}/simulate_observations_ctl.py", "--start", "--interval", "0.05")],
    )
    assert started[0]["result"] == "Ok", started
    await asyncio.sleep(0.6)  # the simulator keeps appending between commands
    first = json.loads(
        (await exec_and_wait(yagna, activity_id, [run(f"{RUN}/simple_service.py", "--stats")]))[0][
            "stdout"
        ]
    )
    await asyncio.sleep(0.4)
    second = json.loads(
        (await exec_and_wait(yagna, activity_id, [run(f"{RUN}/simple_service.py", "--stats")]))[0][
            "stdout"
        ]
    )
    assert first["count"] > 0
    assert second["count"] > first["count"], (first, second)
    assert second["min"] <= second["median"] <= second["max"]

    stopped = await exec_and_wait(
        yagna, activity_id, [run(f"{RUN}/simulate_observations_ctl.py", "--stop")]
    )
    assert stopped[0]["result"] == "Ok", stopped
    marker = await yagna.get(
        f"/_localnet/activities/{activity_id}/files", params={"path": "/golem/work/stopped"}
    )
    assert marker.status_code == 200
    assert marker.content.startswith(b"stopped simulator pid")

    destroyed = await yagna.delete(f"/activity-api/v1/activity/{activity_id}")
    assert (destroyed.status_code, destroyed.json()) == (200, None)
    terminated = await yagna.post(
        f"/market-api/v1/agreements/{deal.agreement_id}/terminate", json={"message": "done"}
    )
    assert (terminated.status_code, terminated.text) == (200, "")
    audit = (await yagna.get("/_localnet/audit")).json()
    assert audit["sandboxesAlive"] == 0
    assert [a["state"] for a in audit["activities"]] == ["Terminated"]
    assert [a["state"] for a in audit["agreements"]] == ["Terminated"]


async def test_background_process_dies_with_the_activity(
    localnet: LocalNetwork, yagna: httpx.AsyncClient
) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    await exec_and_wait(yagna, activity_id, [run(f"{RUN}/simulate_observations_ctl.py", "--start")])
    sandbox = localnet.network.activities[activity_id].sandbox
    assert sandbox is not None
    observations = sandbox.host_path("/golem/work/observations.txt")
    await asyncio.sleep(0.5)
    await yagna.delete(f"/activity-api/v1/activity/{activity_id}")
    size = observations.stat().st_size
    await asyncio.sleep(0.6)
    assert observations.stat().st_size == size  # nothing appends any more: the process is gone
    state = (await yagna.get(f"/activity-api/v1/activity/{activity_id}/state")).json()
    assert state["state"] == ["Terminated", None]


async def test_sandbox_refuses_writes_outside_work_and_tmp(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    script = (
        "touch /golem/work/ok && touch /tmp/ok && echo both-ok;"
        " touch /golem/run/bad || touch /etc/bad"
    )
    results = await exec_and_wait(yagna, activity_id, [run("/bin/sh", "-c", script)])
    assert results[0]["result"] == "Error"
    assert "both-ok" in results[0]["stdout"]
    assert "Read-only file system" in results[0]["stderr"]
    outside = await yagna.get(
        f"/_localnet/activities/{activity_id}/files", params={"path": "/etc/passwd"}
    )
    assert outside.status_code == 400


@pytest.mark.parametrize(
    "localnet",
    [localnet_config(limits={"command_timeout_seconds": 0.5, "output_cap_bytes": 100})],
    indirect=True,
)
async def test_time_limit_kills_and_output_is_capped(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    slow = await exec_and_wait(yagna, activity_id, [run("/bin/sh", "-c", "sleep 5; echo late")])
    assert slow[0]["result"] == "Error"
    assert "timed out" in slow[0]["message"]
    assert "late" not in slow[0]["stdout"]
    loud = await exec_and_wait(yagna, activity_id, [run("/bin/sh", "-c", "yes | head -c 5000")])
    assert loud[0]["result"] == "Ok"
    assert loud[0]["stdout"].startswith("y\ny\n")
    assert len(loud[0]["stdout"]) < 200
    assert "truncated at 100 bytes" in loud[0]["stdout"]


async def test_transfer_up_and_down_with_data_urls(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    payload = b"hello from the requestor\n"
    url = "data:application/octet-stream;base64," + base64.b64encode(payload).decode()
    results = await exec_and_wait(
        yagna,
        activity_id,
        [
            {"transfer": {"from": url, "to": "container:/golem/work/in.txt"}},
            run("/bin/sh", "-c", "tr a-z A-Z < /golem/work/in.txt > /golem/work/out.txt"),
            {"transfer": {"from": "container:/golem/work/out.txt", "to": "data:"}},
        ],
    )
    assert [r["result"] for r in results] == ["Ok", "Ok", "Ok"], results
    downloaded = base64.b64decode(results[2]["stdout"].split(",", 1)[1])
    assert downloaded == payload.upper()
    escape = await exec_and_wait(
        yagna, activity_id, [{"transfer": {"from": url, "to": "container:/golem/work/../x"}}]
    )
    assert escape[0]["result"] == "Error"


async def test_failed_command_stops_the_batch(yagna: httpx.AsyncClient) -> None:
    deal = await negotiate(yagna)
    activity_id = await running_activity(yagna, deal.agreement_id)
    results = await exec_and_wait(
        yagna,
        activity_id,
        [run("/bin/sh", "-c", "echo oops >&2; exit 3"), run("/bin/echo", "never")],
    )
    assert len(results) == 1
    assert results[0]["result"] == "Error"
    assert results[0]["isBatchFinished"] is True
    assert results[0]["stderr"] == "oops\n"
    assert "code 3" in results[0]["message"]
