"""Builders for ExeScript commands, the JSON the activity API's exec call carries.

Each function returns one command as a plain dict in the daemon's format (serde's
externally tagged enum: `{"<command>": {...args}}`); `ActivityApi.exec` JSON-encodes the
list into `ExeScriptRequest.text`. Pure functions, no I/O; the operator's service handlers
call them to build deploy/start/run/terminate scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

CaptureMode = Literal["stream", "atEnd"]
CaptureFormat = Literal["str", "bin"]


def deploy(
    *,
    env: Mapping[str, str] | None = None,
    hostname: str | None = None,
    net: Sequence[Mapping[str, Any]] | None = None,
    hosts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`deploy`: prepare the image (and, with `net`, join VPN networks)."""
    body: dict[str, Any] = {}
    if env:
        body["env"] = dict(env)
    if hostname is not None:
        body["hostname"] = hostname
    if net:
        body["net"] = [dict(n) for n in net]
    if hosts:
        body["hosts"] = dict(hosts)
    return {"deploy": body}


def start(*, args: Sequence[str] = ()) -> dict[str, Any]:
    """`start`: boot the deployed image."""
    return {"start": {"args": list(args)} if args else {}}


def capture(
    mode: CaptureMode = "atEnd", *, fmt: CaptureFormat = "str", limit: int | None = None
) -> dict[str, Any]:
    """One stream's capture spec, e.g. `{"atEnd": {"format": "str"}}`."""
    body: dict[str, Any] = {"format": fmt}
    if limit is not None:
        if mode == "atEnd":
            # The daemon flattens the captured part into atEnd: keep only the tail.
            body["tail"] = limit
        else:
            body["limit"] = limit
    return {mode: body}


def run(
    entry_point: str,
    args: Sequence[str] = (),
    *,
    capture_stdout: Mapping[str, Any] | None = None,
    capture_stderr: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`run`: execute `entry_point` with `args` inside the started image.

    Without explicit capture specs both streams are captured whole at the end, as text,
    so each `ExeScriptCommandResult` carries stdout and stderr.
    """
    out = dict(capture_stdout) if capture_stdout is not None else capture()
    err = dict(capture_stderr) if capture_stderr is not None else capture()
    return {
        "run": {
            "entry_point": entry_point,
            "args": list(args),
            "capture": {"stdout": out, "stderr": err},
        }
    }


def transfer(source: str, destination: str) -> dict[str, Any]:
    """`transfer`: copy a file, e.g. from `http://…` to `container:/path`."""
    return {"transfer": {"from": source, "to": destination}}


def terminate() -> dict[str, Any]:
    """`terminate`: stop the running image."""
    return {"terminate": {}}
