"""Activity API calls: create, exec and batch results, state, usage, destroy."""

from __future__ import annotations

import json

import httpx
import pytest
from golem_fakes import FakeDaemon, error_reply, json_reply

from golem_operator.golem import (
    GolemClient,
    GolemNotFound,
    GolemServerError,
    GolemTimeout,
    exescript,
)

A = "/activity-api/v1"


@pytest.mark.parametrize(
    "answer", ["act-1", {"activityId": "act-1"}, {"activityId": "act-1", "credentials": None}]
)
async def test_create_activity_reads_either_answer_shape(
    daemon: FakeDaemon, client: GolemClient, answer: object
) -> None:
    daemon.route("POST", f"{A}/activity", json_reply(201, answer))

    activity_id = await client.activity.create_activity("agr-1", timeout=20)

    assert activity_id == "act-1"
    assert daemon.last_json() == {"agreementId": "agr-1"}
    assert daemon.last.url.params["timeout"] == "20.0"


async def test_create_activity_timeout_from_the_daemon(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{A}/activity", error_reply(408, "Timeout"))
    with pytest.raises(GolemTimeout):
        await client.activity.create_activity("agr-1", timeout=1)
    assert len(daemon.calls("POST", f"{A}/activity")) == 1


async def test_exec_sends_the_commands_json_encoded_in_text(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("POST", f"{A}/activity/act-1/exec", json_reply(200, "batch-9"))
    commands = [
        exescript.deploy(),
        exescript.start(),
        exescript.run("/bin/sh", ["-c", "echo hi"]),
    ]

    batch_id = await client.activity.exec("act-1", commands)

    assert batch_id == "batch-9"
    body = daemon.last_json()
    assert set(body) == {"text"}
    assert json.loads(body["text"]) == [
        {"deploy": {}},
        {"start": {}},
        {
            "run": {
                "entry_point": "/bin/sh",
                "args": ["-c", "echo hi"],
                "capture": {
                    "stdout": {"atEnd": {"format": "str"}},
                    "stderr": {"atEnd": {"format": "str"}},
                },
            }
        },
    ]


async def test_exec_refuses_an_empty_batch(daemon: FakeDaemon, client: GolemClient) -> None:
    with pytest.raises(ValueError, match="at least one command"):
        await client.activity.exec("act-1", [])
    assert daemon.requests == []


async def test_exec_failure_is_not_retried(daemon: FakeDaemon, client: GolemClient) -> None:
    path = f"{A}/activity/act-1/exec"
    daemon.route("POST", path, error_reply(500, "GSB error: Service receiver was cancelled"))
    with pytest.raises(GolemServerError, match="receiver was cancelled"):
        await client.activity.exec("act-1", [exescript.terminate()])
    assert len(daemon.calls("POST", path)) == 1


async def test_get_exec_batch_results(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{A}/activity/act-1/exec/batch-9",
        json_reply(
            200,
            [
                {
                    "index": 0,
                    "eventDate": "2024-05-06T07:10:00.1Z",
                    "result": "Ok",
                    "stdout": None,
                    "stderr": None,
                    "message": None,
                    "isBatchFinished": False,
                },
                {
                    "index": 1,
                    "eventDate": "2024-05-06T07:10:01Z",
                    "result": "Ok",
                    "isBatchFinished": False,
                },
                {
                    "index": 2,
                    "eventDate": "2024-05-06T07:10:02Z",
                    "result": "Error",
                    "stdout": list(b"hi\n"),
                    "stderr": "sh: oops\n",
                    "message": "ExeUnit exited with code 1",
                    "isBatchFinished": True,
                },
            ],
        ),
    )

    results = await client.activity.get_exec_batch_results(
        "act-1", "batch-9", timeout=4, command_index=2
    )

    assert dict(daemon.last.url.params) == {"timeout": "4.0", "commandIndex": "2"}
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.ok for r in results] == [True, True, False]
    last = results[-1]
    assert last.stdout == "hi\n" and last.stderr == "sh: oops\n"
    assert last.message == "ExeUnit exited with code 1"
    assert last.is_batch_finished is True


async def test_get_state_and_liveness(daemon: FakeDaemon, client: GolemClient) -> None:
    path = f"{A}/activity/act-1/state"
    daemon.route(
        "GET",
        path,
        json_reply(200, {"state": ["Ready", None], "reason": None, "errorMessage": None}),
        json_reply(
            200,
            {"state": ["Ready", "Terminated"], "reason": "bye", "errorMessage": "OOM"},
        ),
    )
    ready = await client.activity.get_state("act-1")
    assert (ready.current, ready.next, ready.alive) == ("Ready", None, True)

    dying = await client.activity.get_state("act-1")
    assert (dying.current, dying.next, dying.alive) == ("Ready", "Terminated", False)
    assert dying.reason == "bye" and dying.error_message == "OOM"


async def test_get_usage(daemon: FakeDaemon, client: GolemClient) -> None:
    daemon.route(
        "GET",
        f"{A}/activity/act-1/usage",
        json_reply(200, {"currentUsage": [123.5, 34000.0], "timestamp": 1714979400}),
    )
    usage = await client.activity.get_usage("act-1")
    assert usage.current_usage == [123.5, 34000.0]
    assert usage.timestamp == 1714979400


async def test_destroy_activity_is_a_delete_with_timeout(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    daemon.route("DELETE", f"{A}/activity/act-1", json_reply(200, None))
    await client.activity.destroy_activity("act-1", timeout=7)
    assert daemon.last.method == "DELETE"
    assert daemon.last.url.params["timeout"] == "7.0"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_unknown_activity_is_not_found_and_not_retried(
    daemon: FakeDaemon, client: GolemClient, method: str
) -> None:
    # yagna 0.17.6 answers an unknown activity id with 500 and a DAO "Not found" message.
    activity_id = "0" * 32
    path = f"{A}/activity/{activity_id}" + ("/state" if method == "GET" else "")
    message = f"DAO error: Not found: agreement id for activity: {activity_id}"
    daemon.route(method, path, error_reply(500, message))
    with pytest.raises(GolemNotFound) as caught:
        if method == "GET":
            await client.activity.get_state(activity_id)
        else:
            await client.activity.destroy_activity(activity_id)
    assert caught.value.status == 500 and caught.value.message == message
    assert len(daemon.calls(method, path)) == 1


async def test_destroy_activity_is_retried_when_the_daemon_is_briefly_down(
    daemon: FakeDaemon, client: GolemClient
) -> None:
    path = f"{A}/activity/act-1"
    daemon.route("DELETE", path, error_reply(503, "busy"), httpx.Response(200))
    await client.activity.destroy_activity("act-1")
    assert len(daemon.calls("DELETE", path)) == 2
