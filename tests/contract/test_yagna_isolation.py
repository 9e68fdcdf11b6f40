"""The yagna fixture keeps the daemon on loopback and leaves nothing behind.

Checks the running session daemon (`yagna_daemon` from conftest.py): it is the real yagna
0.17.6, it sits in its own network namespace that has only `lo`, and nothing inside that
namespace can reach the host's loopback. The teardown check runs the namespace anchor alone
(no second yagna, to keep the suite fast) and asserts that no process and no namespace is left.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.yagna import (
    YAGNA_VERSION,
    YagnaDaemon,
    YagnaProcesses,
    YagnaStartError,
    processes_in_namespace,
    running_yagna,
    yagna_binary,
    yagna_environment,
)

pytestmark = [pytest.mark.yagna, pytest.mark.timeout(120)]


def _netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _interfaces(pid: int) -> list[str]:
    # /proc/<pid>/net/dev lists the interfaces of that process's network namespace.
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines)


def test_the_daemon_is_real_yagna_in_a_loopback_only_namespace(yagna_daemon: YagnaDaemon) -> None:
    assert Path(f"/proc/{yagna_daemon.daemon_pid}/exe").resolve() == yagna_binary().resolve()
    version = subprocess.run(
        [str(yagna_binary()), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.split()[:2] == ["yagna", YAGNA_VERSION]

    assert _netns_inode(yagna_daemon.daemon_pid) == _netns_inode(yagna_daemon.namespace_pid)
    assert _netns_inode(yagna_daemon.daemon_pid) != _netns_inode("self")
    assert _interfaces(yagna_daemon.daemon_pid) == ["lo"]


def test_every_endpoint_points_at_loopback(tmp_path: Path) -> None:
    env = yagna_environment(tmp_path)
    endpoint_keys = [k for k in env if k.endswith(("_URL", "_ADDR", "_HOST"))]
    assert {"YAGNA_API_URL", "GSB_URL", "YA_NET_RELAY_HOST", "HOLESKY_GETH_ADDR"} <= set(
        endpoint_keys
    )
    for key in endpoint_keys:
        assert "127.0.0.1" in env[key], key
    assert env["YAGNA_DATADIR"].startswith(str(tmp_path))
    assert env["HOME"].startswith(str(tmp_path))


def test_the_namespace_cannot_reach_the_hosts_loopback(yagna_daemon: YagnaDaemon) -> None:
    host_listener = socket.socket()
    host_listener.bind(("127.0.0.1", 0))
    host_listener.listen(1)
    port = host_listener.getsockname()[1]
    try:
        probe = subprocess.run(
            [
                "nsenter",
                f"--net=/proc/{yagna_daemon.namespace_pid}/ns/net",
                "--",
                sys.executable,
                "-c",
                "import socket,sys\n"
                "try:\n"
                f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                "    print('connected')\n"
                "except OSError as e:\n"
                "    print(type(e).__name__)\n",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        )
    finally:
        host_listener.close()
    assert probe.stdout.strip() == "ConnectionRefusedError"


async def test_the_rest_api_answers_through_the_host_side_relay(
    yagna_daemon: YagnaDaemon,
) -> None:
    async with httpx.AsyncClient(base_url=yagna_daemon.url, trust_env=False) as http:
        anonymous = await http.get("/me")
        known = await http.get(
            "/me", headers={"Authorization": f"Bearer {yagna_daemon.provider_key}"}
        )
    assert anonymous.status_code == 401
    assert known.status_code == 200
    assert known.json()["identity"] == yagna_daemon.provider_id


async def test_teardown_leaves_no_process_and_no_namespace(tmp_path: Path) -> None:
    processes = YagnaProcesses(tmp_path)
    processes._start_anchor()
    await processes._wait_anchor_ready()
    assert processes.anchor is not None and processes.netns_inode is not None
    anchor_pid = processes.anchor.pid
    inode = processes.netns_inode
    # A stray process inside the namespace must be reaped by stop() too.
    stray = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
        ["nsenter", f"--net=/proc/{anchor_pid}/ns/net", "--", "sleep", "300"],
        start_new_session=True,
    )
    try:
        for _ in range(100):  # nsenter needs a moment to enter the namespace
            if stray.pid in processes_in_namespace(inode):
                break
            await asyncio.sleep(0.05)
        assert sorted(processes_in_namespace(inode)) == sorted([anchor_pid, stray.pid])
        await processes.stop()
        assert processes_in_namespace(inode) == []
        with pytest.raises(ProcessLookupError):
            os.kill(anchor_pid, 0)  # reaped, not merely dead
        await asyncio.wait_for(asyncio.to_thread(stray.wait), 5)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


async def test_a_missing_binary_fails_the_fixture(tmp_path: Path) -> None:
    with pytest.raises(YagnaStartError, match="yagna binary not found"):
        async with running_yagna(tmp_path, binary=tmp_path / "no-such-yagna"):
            pass


async def test_a_daemon_that_exits_at_once_fails_the_fixture(tmp_path: Path) -> None:
    exits = tmp_path / "yagna"
    exits.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    exits.chmod(0o755)
    with pytest.raises(YagnaStartError, match=r"exited with 3(.|\n)*cannot start"):
        async with running_yagna(tmp_path, binary=exits):
            pass
