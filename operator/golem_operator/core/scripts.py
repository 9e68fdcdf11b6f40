"""Lifecycle scripts to ExeScript batches, and batch results to status. Pure.

Called by the instance phases (start, run, stop). Uploads and downloads are carried by `run`
commands of the image's /bin/sh (base64 through arguments and stdout), so they work on any
VM image with a POSIX shell and need no file-transfer service between requestor and provider.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from golem_operator.api.spec import Command
from golem_operator.api.status import Download, RunResult

#: The tail of each stream kept in status.
OUTPUT_TAIL = 2048
#: Linux caps one argument at 128 KiB; uploads travel in chunks below that.
_CHUNK = 96 * 1024

_UPLOAD = 'p="$0"; for c in "$@"; do printf %s "$c"; done | base64 -d > "$p"'
_DOWNLOAD = 'wc -c < "$1"; head -c "$0" -- "$1" | base64'


def _capture() -> dict[str, Any]:
    tail = {"format": "str", "tail": OUTPUT_TAIL * 4}
    return {"stdout": {"atEnd": tail}, "stderr": {"atEnd": dict(tail)}}


def _run(entry_point: str, args: list[str]) -> dict[str, Any]:
    return {"run": {"entry_point": entry_point, "args": args, "capture": _capture()}}


@dataclass(frozen=True)
class Step:
    """What one ExeScript command of a batch stands for."""

    kind: str  # deploy, start, run, upload, download, terminate
    path: str = ""
    max_bytes: int = 0


@dataclass(frozen=True)
class Batch:
    commands: list[dict[str, Any]]
    steps: list[Step] = field(default_factory=list)


def compile_script(
    commands: list[Command],
    uploads: dict[int, bytes] | None = None,
    deploy: dict[str, Any] | None = None,
) -> Batch:
    """ExeScript commands for a script; uploads[i] is the content of upload command i, and
    `deploy` the body of deploy commands (the VPN's `net`, `hosts` and `hostname`)."""
    uploads = uploads or {}
    out: list[dict[str, Any]] = []
    steps: list[Step] = []
    for index, command in enumerate(commands):
        if command.deploy is not None:
            out.append({"deploy": dict(deploy or {})})
            steps.append(Step("deploy"))
        elif command.start is not None:
            out.append({"start": {}})
            steps.append(Step("start"))
        elif command.run is not None:
            run = command.run
            if run.env:
                env = [f"{e.name}={e.value}" for e in run.env]
                out.append(_run("/usr/bin/env", [*env, run.entrypoint, *run.args]))
            else:
                out.append(_run(run.entrypoint, list(run.args)))
            steps.append(Step("run"))
        elif command.upload is not None:
            content = uploads.get(index)
            if content is None:
                raise ValueError(f"upload {index} ({command.upload.path}) has no content")
            encoded = base64.b64encode(content).decode()
            chunks = [encoded[i : i + _CHUNK] for i in range(0, len(encoded), _CHUNK)] or [""]
            out.append(_run("/bin/sh", ["-c", _UPLOAD, command.upload.path, *chunks]))
            steps.append(Step("upload", path=command.upload.path))
        elif command.download is not None:
            dl = command.download
            out.append(_run("/bin/sh", ["-c", _DOWNLOAD, str(dl.max_bytes), dl.path]))
            steps.append(Step("download", path=dl.path, max_bytes=dl.max_bytes))
        elif command.terminate is not None:
            out.append({"terminate": {}})
            steps.append(Step("terminate"))
    return Batch(out, steps)


@dataclass(frozen=True)
class CommandOutcome:
    """One command's result as the client reported it."""

    index: int
    ok: bool
    stdout: str = ""
    stderr: str = ""
    message: str = ""


def tail(text: str, limit: int = OUTPUT_TAIL) -> str:
    return text[-limit:] if len(text) > limit else text


def decode_download(step: Step, stdout: str) -> Download:
    """The Download record from the shell's `wc -c` line and base64 head."""
    size_line, _, encoded = stdout.partition("\n")
    try:
        size = int(size_line.strip())
        content = base64.b64decode("".join(encoded.split()), validate=True)
    except (ValueError, binascii.Error):
        return Download(path=step.path, content="", truncated=False)
    return Download(
        path=step.path,
        content=content[: step.max_bytes].decode("utf-8", errors="replace"),
        truncated=size > step.max_bytes,
    )


def summarize_results(
    batch: Batch, outcomes: list[CommandOutcome], time: str, error: str = ""
) -> tuple[RunResult, list[Download]]:
    """The status record of a finished (or failed) batch."""
    downloads = [
        decode_download(batch.steps[o.index], o.stdout)
        for o in outcomes
        if o.ok and o.index < len(batch.steps) and batch.steps[o.index].kind == "download"
    ]
    shown = [
        o for o in outcomes if o.index < len(batch.steps) and batch.steps[o.index].kind == "run"
    ]
    failed = next((o for o in outcomes if not o.ok), None)
    success = not error and failed is None and len(outcomes) == len(batch.commands)
    message = error
    if failed is not None:
        step = batch.steps[failed.index] if failed.index < len(batch.steps) else Step("?")
        message = f"command {failed.index} ({step.kind}) failed: {failed.message or failed.stderr}"
    elif not success and not message:
        message = f"only {len(outcomes)} of {len(batch.commands)} commands finished"
    last = failed or (shown[-1] if shown else None)
    result = RunResult(
        time=time,
        success=success,
        stdout=tail(last.stdout) if last else "",
        stderr=tail(last.stderr) if last else "",
        message=tail(message, 1024),
    )
    return result, downloads
