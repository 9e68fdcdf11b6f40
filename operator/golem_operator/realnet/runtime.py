"""The project's ExeUnit runtime: what yagna's exe-unit drives for a `vm` activity here.

exe-unit (the real one, built from the yagna source) runs this program once per command of an
activity, in its "process per command" mode, with the arguments its runtime contract defines::

    RUNTIME [--workdir W] [--task-package P] [--cpu-cores N] [--mem-gib X] [--storage-gib Y]
            [--volume-override JSON] [--hostname H] COMMAND [-- ARGS...]

    test            the provider checks the runtime at startup
    offer-template  properties the runtime adds to the provider's offer (JSON)
    deploy --       unpack the image package exe-unit downloaded and hash-checked into W/image;
                    print the deploy result JSON (volumes, start mode "empty")
    start --        boot the activity's sandbox (the VM runtime boots its VM here)
    run --entrypoint E -- ARGS
                    run E inside the sandbox, stdout/stderr straight to exe-unit

The sandbox is the local network's (`localnet.sandbox`): one bubblewrap namespace per
activity, the image read-only at its absolute paths, W/work writable at /golem/work, no
network. `start` leaves a keeper process (its own session, outside exe-unit's process tree)
that owns the sandbox and kills it when the exe-unit process that started it exits, i.e. when
the activity ends: a VM lives as long as its activity, and background processes started by
one command (a service's daemon) are still there for the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from golem_operator.localnet.sandbox import (
    DEFAULT_PATH,
    SANDBOX_UID,
    WORK_DIR,
    Sandbox,
    SandboxError,
)

RUNTIME_NAME = "vm"
COMMANDS = ("test", "offer-template", "deploy", "start", "run")
#: options that take a value (exe-unit's CommandArgs; the VM runtime knows the same ones)
VALUE_OPTIONS = (
    "--workdir",
    "--task-package",
    "--cpu-cores",
    "--mem-gib",
    "--storage-gib",
    "--volume-override",
    "--hostname",
    "--vpn-endpoint",
    "--inet-endpoint",
)
IMAGE_DIR = "image"
PID_FILE = "sandbox.pid"
KEEPER_LOG = "runtime-keeper.log"
START_TIMEOUT_S = 30.0


class UsageError(ValueError):
    """The command line is not one exe-unit would send."""


@dataclass(frozen=True)
class Invocation:
    """One call of the runtime, parsed."""

    command: str
    options: dict[str, str] = field(default_factory=dict)
    entrypoint: str | None = None
    args: tuple[str, ...] = ()

    @property
    def workdir(self) -> Path:
        return Path(self.options.get("--workdir", "."))


def parse_invocation(argv: Sequence[str]) -> Invocation:
    """Parse exe-unit's command line; unknown `--x` options before the command are refused."""
    options: dict[str, str] = {}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in COMMANDS:
            break
        if word in VALUE_OPTIONS:
            if index + 1 >= len(argv):
                raise UsageError(f"{word} needs a value")
            options[word] = argv[index + 1]
            index += 2
            continue
        raise UsageError(f"unknown argument {word!r} (expected one of {', '.join(COMMANDS)})")
    else:
        raise UsageError("no command given")
    command, rest = argv[index], list(argv[index + 1 :])
    entrypoint = None
    if command == "run":
        if rest[:1] != ["--entrypoint"] or len(rest) < 2:
            raise UsageError("run needs --entrypoint PATH")
        entrypoint, rest = rest[1], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    elif rest and command in ("deploy", "start", "run"):
        raise UsageError(f"{command}: arguments must follow --")
    return Invocation(command, options, entrypoint, tuple(rest))


def offer_template() -> dict[str, object]:
    """Nothing beyond what ya-provider already offers: runtime name and version come from the
    ExeUnit descriptor, hardware from the preset."""
    return {"properties": {}, "constraints": ""}


def deploy_result(message: str) -> dict[str, object]:
    """exe-unit's DeployResult: one volume (/golem/work, host folder W/work), process mode."""
    return {
        "valid": {"Ok": message},
        "vols": [{"name": "work", "path": str(WORK_DIR)}],
        "startMode": "empty",
    }


def _within(root: Path, member: tarfile.TarInfo) -> bool:
    target = (root / member.name).resolve()
    return target == root or root in target.parents


def unpack_image(package: Path, image_dir: Path) -> int:
    """Unpack a (possibly compressed) tar image package; refuse members escaping image_dir.

    Returns the number of regular files. The image's own `/golem/work` is dropped: the
    activity's writable volume is mounted there.
    """
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)
    root = image_dir.resolve()
    files = 0
    try:
        archive = tarfile.open(package)  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as err:
        raise SandboxError(f"the task package is not a tar image: {err}") from None
    with archive:
        for member in archive.getmembers():
            if not (member.isfile() or member.isdir() or member.issym()):
                continue
            if member.issym() and (
                os.path.isabs(member.linkname)
                or not _within(
                    root, tarfile.TarInfo(str(Path(member.name).parent / member.linkname))
                )
            ):
                raise SandboxError(f"image member {member.name} links outside the image")
            if not _within(root, member) or member.name.startswith("/"):
                raise SandboxError(f"image member {member.name} escapes the image")
            parts = Path(member.name).parts
            if parts[:2] == ("golem", "work") or parts[:3] == (".", "golem", "work"):
                continue
            archive.extract(member, root, set_attrs=False, filter="fully_trusted")
            extracted = root / member.name
            if member.isfile():
                files += 1
                # the sandbox user (uid 1000) must read and execute what the image ships
                extracted.chmod(0o755 if member.mode & 0o111 else 0o644)
            elif member.isdir():
                extracted.chmod(0o755)
    if files == 0:
        raise SandboxError("the task package holds no files")
    return files


def enter_arguments(nsenter: str, payload_pid: int, argv: Sequence[str]) -> list[str]:
    """nsenter into the sandbox (all namespaces, its root and cwd) as the sandbox user."""
    return [
        nsenter,
        "-t", str(payload_pid),
        "--all", "--root", "--wd",
        "-S", str(SANDBOX_UID), "-G", str(SANDBOX_UID),
        "--",
        *argv,
    ]  # fmt: skip


def command_environment() -> dict[str, str]:
    return {"PATH": DEFAULT_PATH, "HOME": str(WORK_DIR), "LANG": "C.UTF-8"}


def read_payload_pid(workdir: Path) -> int | None:
    """The sandbox's payload pid if the sandbox is alive, else None."""
    try:
        pid = int((workdir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


# -- commands ---------------------------------------------------------------------------------


def _test() -> int:
    missing = [tool for tool in ("bwrap", "nsenter", "sleep") if shutil.which(tool) is None]
    if missing:
        print(
            f"missing tools: {', '.join(missing)} (Debian bubblewrap, util-linux)", file=sys.stderr
        )
        return 1
    print(json.dumps({"runtime": RUNTIME_NAME, "isolation": "bubblewrap"}))
    return 0


def _deploy(inv: Invocation) -> int:
    package = inv.options.get("--task-package")
    if not package:
        print("deploy: no task package (exe-unit passes --task-package)", file=sys.stderr)
        return 1
    files = unpack_image(Path(package), inv.workdir / IMAGE_DIR)
    (inv.workdir / "work").mkdir(parents=True, exist_ok=True)
    print(json.dumps(deploy_result(f"deployed {files} files")))
    return 0


def _settle(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_result(None)


async def _keep(workdir: Path, owner_pid: int, ready_fd: int) -> None:
    """Run the sandbox until the owner (exe-unit) exits or the sandbox dies."""
    sandbox = Sandbox(workdir / IMAGE_DIR, workdir)
    try:
        await sandbox.start()
    except SandboxError as err:
        os.write(ready_fd, f"ERR {err}\n".encode())
        os.close(ready_fd)
        return
    pid_file = workdir / PID_FILE
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(str(sandbox.payload_pid))
    tmp.replace(pid_file)
    os.write(ready_fd, b"OK\n")
    os.close(ready_fd)
    loop = asyncio.get_running_loop()
    owner_gone: asyncio.Future[object] = loop.create_future()
    try:
        owner_fd = os.pidfd_open(owner_pid)
    except ProcessLookupError:
        owner_gone.set_result(None)
    else:
        loop.add_reader(owner_fd, _settle, owner_gone)
    stop: asyncio.Future[object] = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _settle, stop)
    sandbox_dead: asyncio.Future[object] = asyncio.ensure_future(sandbox.wait())
    waits: set[asyncio.Future[object]] = {owner_gone, stop, sandbox_dead}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    await sandbox.kill()
    pid_file.unlink(missing_ok=True)


def _start(inv: Invocation) -> int:
    workdir = inv.workdir
    if not (workdir / IMAGE_DIR).is_dir():
        print("start: the image is not deployed (run deploy first)", file=sys.stderr)
        return 1
    if read_payload_pid(workdir) is not None:
        print("already started")
        return 0
    owner = os.getppid()  # exe-unit: the sandbox lives as long as it does
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the keeper
        os.close(read_fd)
        os.setsid()
        log = os.open(workdir / KEEPER_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        code = 0
        try:
            asyncio.run(_keep(workdir, owner, write_fd))
        except BaseException:  # the keeper reports and exits, never returns
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        line = ready.readline().decode(errors="replace").strip()
    if line == "OK":
        print("started")
        return 0
    print(f"start: the sandbox did not start: {line or 'keeper exited'}", file=sys.stderr)
    return 1


def _run(inv: Invocation) -> int:
    assert inv.entrypoint is not None
    pid = read_payload_pid(inv.workdir)
    if pid is None:
        print("run: the activity is not started (no sandbox)", file=sys.stderr)
        return 1
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        print("run: nsenter is not installed", file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execve(  # noqa: S606 - argv, no shell
        nsenter, enter_arguments(nsenter, pid, [inv.entrypoint, *inv.args]), command_environment()
    )
    return 127  # pragma: no cover - execve does not return


def main(argv: Sequence[str] | None = None) -> int:
    try:
        inv = parse_invocation(list(sys.argv[1:] if argv is None else argv))
    except UsageError as err:
        print(f"golem-operator runtime: {err}", file=sys.stderr)
        return 2
    try:
        if inv.command == "test":
            return _test()
        if inv.command == "offer-template":
            print(json.dumps(offer_template()))
            return 0
        if inv.command == "deploy":
            return _deploy(inv)
        if inv.command == "start":
            return _start(inv)
        return _run(inv)
    except SandboxError as err:
        print(f"{inv.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
