"""Activity API of yagna, requestor side (activity-api.yaml, base path /activity-api/v1).

`GolemClient.activity` is an `ActivityApi`. The operator creates an activity under an
approved agreement, runs ExeScript batches in it (built with
`golem_operator.golem.exescript`), polls their results, watches the activity's state as a
health check, and destroys it on stop.

`timeout` arguments in seconds are the daemon-side wait, sent as the `timeout` query
parameter (hence the ASYNC109 waivers); the client's own deadline is that wait plus
`GolemConfig.request_timeout`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import TypeAdapter

from golem_operator.golem.models import (
    ActivityState,
    ActivityUsage,
    ExeScriptCommandResult,
    ExeScriptRequest,
)
from golem_operator.golem.requesting import (
    Requester,
    check_ack_timeout,
    check_poll_timeout,
    parse_adapted,
    parse_id,
    parse_model,
)

BASE: Final = "/activity-api/v1"

_BATCH_RESULTS: Final = TypeAdapter(list[ExeScriptCommandResult])


class ActivityApi:
    """Requestor calls of the activity API."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def create_activity(self, agreement_id: str, *, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """POST /activity: start an activity on the provider; returns its id.

        `timeout` is how long the daemon waits for the provider to answer (408 after it).
        A non-approved agreement raises `GolemBadRequest`, an unknown one `GolemNotFound`.
        """
        wait = check_ack_timeout(timeout)
        response = await self._requester.request(
            "POST",
            f"{BASE}/activity",
            params={"timeout": wait},
            body={"agreementId": agreement_id},
            wait=wait,
        )
        return parse_id(response, object_key="activityId")

    async def exec(self, activity_id: str, commands: Sequence[Mapping[str, Any]]) -> str:
        """POST /activity/{id}/exec: run a batch of ExeScript commands; returns the batch id.

        `commands` are dicts such as `{"deploy": {}}`, `{"start": {}}` or
        `{"run": {"entry_point": "/bin/sh", "args": ["-c", "echo hi"], "capture": {...}}}`
        (see `golem_operator.golem.exescript`); they travel JSON-encoded in
        `ExeScriptRequest.text`.
        """
        if not commands:
            raise ValueError("an ExeScript batch needs at least one command")
        script = ExeScriptRequest(text=json.dumps([dict(command) for command in commands]))
        response = await self._requester.request(
            "POST",
            f"{BASE}/activity/{{activityId}}/exec",
            path_params={"activityId": activity_id},
            body=script.to_wire(),
        )
        return parse_id(response)

    async def get_exec_batch_results(
        self,
        activity_id: str,
        batch_id: str,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        command_index: int | None = None,
    ) -> list[ExeScriptCommandResult]:
        """GET /activity/{id}/exec/{batchId}: results of the batch's finished commands.

        Long-polls up to `timeout` seconds (with `command_index`: until that command
        finished). The daemon answers 408 when nothing finished in time, raised as
        `GolemTimeout`: poll again.
        """
        wait = check_poll_timeout(timeout)
        params: dict[str, str | int | float] = {"timeout": wait}
        if command_index is not None:
            if command_index < 0:
                raise ValueError("command_index must be >= 0")
            params["commandIndex"] = command_index
        response = await self._requester.request(
            "GET",
            f"{BASE}/activity/{{activityId}}/exec/{{batchId}}",
            path_params={"activityId": activity_id, "batchId": batch_id},
            params=params,
            wait=wait,
        )
        return parse_adapted(response, _BATCH_RESULTS, "list of ExeScript command results")

    async def get_state(self, activity_id: str) -> ActivityState:
        """GET /activity/{id}/state: e.g. ("Ready", None) or ("Terminated", None).

        An unknown activity raises `GolemNotFound` (yagna: 500 `DAO error: Not found`).
        """
        response = await self._requester.request(
            "GET",
            f"{BASE}/activity/{{activityId}}/state",
            path_params={"activityId": activity_id},
        )
        return parse_model(response, ActivityState)

    async def get_usage(self, activity_id: str) -> ActivityUsage:
        """GET /activity/{id}/usage: the usage counters so far."""
        response = await self._requester.request(
            "GET",
            f"{BASE}/activity/{{activityId}}/usage",
            path_params={"activityId": activity_id},
        )
        return parse_model(response, ActivityUsage)

    async def destroy_activity(self, activity_id: str, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """DELETE /activity/{id}: stop the activity on the provider.

        Destroying a destroyed activity succeeds again; an unknown one raises
        `GolemNotFound` (yagna: 500 `DAO error: Not found`).
        """
        wait = check_ack_timeout(timeout)
        await self._requester.request(
            "DELETE",
            f"{BASE}/activity/{{activityId}}",
            path_params={"activityId": activity_id},
            params={"timeout": wait},
            wait=wait,
        )
