"""Per-activity sandboxes: one long-lived bubblewrap namespace per activity.

Used by `localnet.exeunit` (the simulated ExeUnit). Each activity gets one `bwrap` process
(`--unshare-all --die-with-parent --new-session`) whose command is an idle `sleep infinity`;
every `run` command enters that sandbox's namespaces with `nsenter` as the unprivileged
sandbox user, so background processes started by one command keep running for the next one.
Killing the bwrap process kills the sandbox's PID namespace and every process in it.

Processes are started with `os.posix_spawn` and watched through pidfds registered with the
event loop: no thread per process or per activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: uid/gid of commands inside the sandbox (mapped to the server's uid outside)
SANDBOX_UID = 1000
WORK_DIR = PurePosixPath("/golem/work")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_TRUNCATION_NOTE = "\n[localnet: output truncated at {cap} bytes]"


class SandboxError(RuntimeError):
    """The sandbox could not be started, or a request on it is invalid."""


@dataclass(frozen=True)
class CommandOutcome:
    """How one command ended. exit_code is None when it was killed for its time limit."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool


@functools.cache  # a PATH search per command was a twentieth of a busy network's CPU
def host_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxError(f"{name} is not installed (Debian packages bubblewrap, util-linux)")
    return path


class ChildProcess:
    """A process started with posix_spawn, awaited through its pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
        extra_fd: int | None = None,
        new_session: bool = False,
    ) -> ChildProcess:
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)
        ]
        for target, fd in ((1, stdout_fd), (2, stderr_fd), (3, extra_fd)):
            if fd is not None:
                actions.append((os.POSIX_SPAWN_DUP2, fd, target))
            elif target < 3:
                actions.append((os.POSIX_SPAWN_OPEN, target, "/dev/null", os.O_WRONLY, 0))
        pid = os.posix_spawn(
            argv[0], list(argv), dict(env), file_actions=actions, setsid=new_session
        )
        return cls(pid)

    def _on_exit(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else; the code is lost
            code = -1
        os.close(self._pidfd)
        self._pidfd = -1
        if not self._exit.done():
            self._exit.set_result(code)

    @property
    def running(self) -> bool:
        return not self._exit.done()

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def kill(self, *, group: bool = False) -> None:
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if group:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


def image_mounts(image_dir: Path) -> list[str]:
    """bwrap arguments placing the image's files at their absolute paths, read-only.

    `/golem` is a directory of its own so that `/golem/work` can be mounted writable beside
    the image's `/golem/run` (a read-only bind of the image's `golem/` could not hold it).
    """
    args = ["--dir", "/golem"]
    for entry in sorted(image_dir.iterdir()):
        if entry.name == "golem" and entry.is_dir():
            for child in sorted(entry.iterdir()):
                if child.name != "work":
                    args += ["--ro-bind", str(child), f"/golem/{child.name}"]
        else:
            args += ["--ro-bind", str(entry), f"/{entry.name}"]
    return args


def hosts_file(hosts: Mapping[str, str], hostname: str | None) -> str:
    """The sandbox's /etc/hosts: loopback names, then the deploy's `hosts` (name -> ip)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname is not None and hostname not in hosts:
        lines.append(f"127.0.1.1\t{hostname}")
    lines += [f"{ip}\t{name}" for name, ip in sorted(hosts.items())]
    return "\n".join(lines) + "\n"


def bwrap_arguments(
    bwrap: str,
    image_dir: Path,
    work_dir: Path,
    sleep: str,
    *,
    hosts: Path | None = None,
    hostname: str | None = None,
) -> list[str]:
    """The full bwrap command line of one sandbox (info JSON written to fd 3).

    hosts: a file to show as /etc/hosts (the deploy's `hosts`); hostname: the sandbox's own
    host name (its UTS namespace is its own).
    """
    own_hosts = ["--ro-bind", str(hosts), "/etc/hosts"] if hosts is not None else []
    own_name = ["--hostname", hostname] if hostname is not None else []
    return [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        *own_name,
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
        "--ro-bind", "/etc", "/etc",
        *own_hosts,
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",  # noqa: S108 - the sandbox's own private /tmp
        *image_mounts(image_dir),
        "--bind", str(work_dir), str(WORK_DIR),
        "--chdir", str(WORK_DIR),
        "--remount-ro", "/",
        "--info-fd", "3",
        "--", sleep, "infinity",
    ]  # fmt: skip


async def _read_all(fd: int) -> bytes:
    """Read a pipe to EOF without blocking the loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


def _proc_read(path: str) -> str:
    return Path(path).read_text()


def _read_capped(path: Path, cap: int) -> str:
    with path.open("rb") as handle:
        data = handle.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    if len(data) > cap:
        text += _TRUNCATION_NOTE.format(cap=cap)
    return text


class Sandbox:
    """One activity's isolated environment."""

    def __init__(
        self,
        image_dir: Path,
        activity_dir: Path,
        *,
        hosts: Mapping[str, str] | None = None,
        hostname: str | None = None,
    ) -> None:
        self.image_dir = image_dir
        self.work_dir = activity_dir / "work"
        self._io_dir = activity_dir / "io"
        self._hosts_path = activity_dir / "hosts"
        self.hosts = dict(hosts or {})
        self.hostname = hostname
        self._bwrap: ChildProcess | None = None
        self._target_pid = 0
        self._commands: set[ChildProcess] = set()
        self._counter = 0

    @property
    def alive(self) -> bool:
        return self._bwrap is not None and self._bwrap.running

    @property
    def payload_pid(self) -> int:
        """The sandbox's idle process (0 when not started): `nsenter -t` enters through it."""
        return self._target_pid

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._io_dir.mkdir(parents=True, exist_ok=True)
        own_hosts = None
        if self.hosts or self.hostname is not None:
            self._hosts_path.write_text(hosts_file(self.hosts, self.hostname))
            own_hosts = self._hosts_path
        read_fd, write_fd = os.pipe()
        argv = bwrap_arguments(
            host_tool("bwrap"),
            self.image_dir,
            self.work_dir,
            host_tool("sleep"),
            hosts=own_hosts,
            hostname=self.hostname,
        )
        try:
            self._bwrap = ChildProcess.spawn(argv, {"PATH": DEFAULT_PATH}, extra_fd=write_fd)
        finally:
            os.close(write_fd)
        try:
            info = await asyncio.wait_for(_read_all(read_fd), timeout=10)
        finally:
            os.close(read_fd)
        if not info:
            await self.kill()
            raise SandboxError("bwrap did not start the sandbox")
        init_pid = int(json.loads(info)["child-pid"])
        self._target_pid = await self._find_payload(init_pid)

    async def _find_payload(self, init_pid: int) -> int:
        """The idle payload process: it sits in the final (uid-mapped) user namespace."""
        for _ in range(2000):
            try:
                # /proc reads never block on I/O
                children = _proc_read(f"/proc/{init_pid}/task/{init_pid}/children").split()
                for child in children:
                    uid_map = _proc_read(f"/proc/{child}/uid_map").split()
                    if uid_map[:1] == [str(SANDBOX_UID)] and os.readlink(
                        f"/proc/{child}/exe"
                    ).endswith("/sleep"):
                        return int(child)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
            if not self.alive:
                break
            await asyncio.sleep(0.002)
        await self.kill()
        raise SandboxError("the sandbox payload process did not appear")

    async def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        *,
        time_limit: float,
        output_cap: int,
    ) -> CommandOutcome:
        """Run one command inside the sandbox as the sandbox user, cwd /golem/work."""
        if not self.alive:
            raise SandboxError("the activity's sandbox is not running")
        self._counter += 1
        out_path = self._io_dir / f"{self._counter}.out"
        err_path = self._io_dir / f"{self._counter}.err"
        command_env = {"PATH": DEFAULT_PATH, "HOME": str(WORK_DIR), "LANG": "C.UTF-8"}
        command_env.update(env or {})
        nsenter = [
            host_tool("nsenter"),
            "-t", str(self._target_pid),
            "--all", "--root", "--wd",
            "-S", str(SANDBOX_UID), "-G", str(SANDBOX_UID),
            "--",
            *argv,
        ]  # fmt: skip
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = ChildProcess.spawn(
                nsenter,
                command_env,
                stdout_fd=out.fileno(),
                stderr_fd=err.fileno(),
                new_session=True,
            )
        self._commands.add(process)
        timed_out = False
        try:
            try:
                code: int | None = await asyncio.wait_for(process.wait(), time_limit)
            except TimeoutError:
                process.kill(group=True)
                await process.wait()
                code, timed_out = None, True
        except asyncio.CancelledError:
            process.kill(group=True)
            raise
        finally:
            self._commands.discard(process)
        try:
            stdout = _read_capped(out_path, output_cap)
            stderr = _read_capped(err_path, output_cap)
        finally:
            out_path.unlink(missing_ok=True)
            err_path.unlink(missing_ok=True)
        return CommandOutcome(code, stdout, stderr, timed_out)

    def host_path(self, container_path: str) -> Path:
        """The host file behind a path under /golem/work; refuses anything outside it."""
        path = PurePosixPath(container_path)
        if not path.is_absolute():
            path = WORK_DIR / path
        try:
            relative = path.relative_to(WORK_DIR)
        except ValueError:
            raise SandboxError(f"{container_path} is not under {WORK_DIR}") from None
        candidate = (self.work_dir / relative).resolve()
        root = self.work_dir.resolve()
        if candidate != root and root not in candidate.parents:
            raise SandboxError(f"{container_path} escapes {WORK_DIR}")
        return candidate

    async def kill(self) -> None:
        """Kill every process of the sandbox and wait for the bwrap process to go."""
        for command in list(self._commands):
            command.kill(group=True)
        if self._bwrap is not None:
            self._bwrap.kill()
            await self._bwrap.wait()
        self._target_pid = 0

    async def wait(self) -> int:
        """Resolves when the sandbox dies (crash, kill)."""
        if self._bwrap is None:
            return -1
        return await self._bwrap.wait()
