"""The project's ExeUnit runtime, driven as yagna's exe-unit drives it (no yagna needed).

The command lines are the ones exe-unit builds (`--workdir W --task-package P ... deploy --`,
`start --`, `run --entrypoint E -- ARGS`); the sandbox is real bubblewrap.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from golem_operator.localnet.sandbox import SandboxError
from golem_operator.realnet import runtime
from golem_operator.realnet.runtime import UsageError, parse_invocation, unpack_image

ROOT = Path(__file__).resolve().parents[3]
IMAGE = ROOT / "examples" / "images" / "simple-service"


def runtime_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "golem_operator.realnet.runtime", *args]


def image_tar(tmp_path: Path, source: Path = IMAGE) -> Path:
    package = tmp_path / "image.tar.gz"
    with tarfile.open(package, "w:gz") as archive:
        archive.add(source, arcname=".")
    return package


# -- parsing --------------------------------------------------------------------------------


def test_parses_exe_unit_command_lines() -> None:
    deploy = parse_invocation(
        ["--workdir", "/w", "--task-package", "/c/img", "--cpu-cores", "2", "deploy", "--"]
    )
    assert deploy.command == "deploy"
    assert deploy.workdir == Path("/w")
    assert deploy.options["--task-package"] == "/c/img"
    run = parse_invocation(["--workdir", "/w", "run", "--entrypoint", "/bin/sh", "--", "-c", "x"])
    assert (run.command, run.entrypoint, run.args) == ("run", "/bin/sh", ("-c", "x"))
    start = parse_invocation(["--workdir", "/w", "start", "--", "a"])
    assert start.args == ("a",)
    assert parse_invocation(["offer-template"]).command == "offer-template"


@pytest.mark.parametrize(
    "argv",
    [[], ["--workdir"], ["--bogus", "x", "deploy"], ["run", "--", "x"], ["deploy", "x"]],
)
def test_refuses_what_exe_unit_never_sends(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_invocation(argv)


def test_deploy_result_is_what_exe_unit_parses() -> None:
    result = runtime.deploy_result("ok")
    # exe-unit's DeployResult: {"valid": {"Ok": ..}, "vols": [{name, path}], "startMode"}
    assert result["valid"] == {"Ok": "ok"}
    assert result["vols"] == [{"name": "work", "path": "/golem/work"}]
    assert result["startMode"] == "empty"  # process per command, not the service protocol


def test_offer_template_is_valid_json_with_properties_and_constraints() -> None:
    out = subprocess.run(runtime_cmd("offer-template"), capture_output=True, check=True)
    template = json.loads(out.stdout)
    assert set(template) == {"properties", "constraints"}


# -- image unpacking ------------------------------------------------------------------------


def test_unpacks_the_image_and_drops_its_work_folder(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "golem" / "run").mkdir(parents=True)
    (source / "golem" / "work").mkdir(parents=True)
    (source / "golem" / "run" / "x.sh").write_text("#!/bin/sh\necho hi\n")
    (source / "golem" / "run" / "x.sh").chmod(0o700)
    (source / "golem" / "work" / "stale").write_text("from the image")
    files = unpack_image(image_tar(tmp_path, source), tmp_path / "image")
    assert files == 1
    unpacked = tmp_path / "image" / "golem" / "run" / "x.sh"
    assert unpacked.read_text().endswith("echo hi\n")
    assert unpacked.stat().st_mode & 0o777 == 0o755  # readable and executable by uid 1000
    assert not (tmp_path / "image" / "golem" / "work").exists()


def test_refuses_members_escaping_the_image(tmp_path: Path) -> None:
    package = tmp_path / "evil.tar"
    with tarfile.open(package, "w") as archive:
        data = b"x"
        info = tarfile.TarInfo("../escaped")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(SandboxError, match="escapes"):
        unpack_image(package, tmp_path / "image")
    assert not (tmp_path / "escaped").exists()


def test_refuses_symlinks_out_of_the_image(tmp_path: Path) -> None:
    package = tmp_path / "link.tar"
    with tarfile.open(package, "w") as archive:
        info = tarfile.TarInfo("golem/etc")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc"
        archive.addfile(info)
    with pytest.raises(SandboxError, match="links outside"):
        unpack_image(package, tmp_path / "image")


def test_refuses_a_package_that_is_not_a_tar(tmp_path: Path) -> None:
    package = tmp_path / "image.bin"
    package.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(SandboxError, match="not a tar"):
        unpack_image(package, tmp_path / "image")


# -- the whole contract, as exe-unit drives it ---------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_deploy_start_run_in_a_sandbox_that_dies_with_its_exe_unit(tmp_path: Path) -> None:
    workdir = tmp_path / "activity"
    workdir.mkdir()
    package = image_tar(tmp_path)
    common = ["--workdir", str(workdir), "--task-package", str(package)]

    deployed = subprocess.run(
        runtime_cmd(*common, "deploy", "--"), capture_output=True, text=True, check=True
    )
    result = json.loads(deployed.stdout[deployed.stdout.index("{") :])
    assert result["valid"]["Ok"].startswith("deployed")

    # `run` before `start` fails: there is no VM yet
    early = subprocess.run(
        runtime_cmd(*common, "run", "--entrypoint", "/bin/true", "--"), capture_output=True
    )
    assert early.returncode == 1
    assert b"not started" in early.stderr

    # exe-unit is the parent of `start`; a stand-in parent that outlives it
    owner = subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            '"$@"; echo started-rc=$?; exec sleep 600',
            "owner",
            *runtime_cmd(*common, "start", "--"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        lines = [owner.stdout.readline().strip() for _ in range(2)]
        assert lines == ["started", "started-rc=0"], lines
        payload = runtime.read_payload_pid(workdir)
        assert payload is not None

        def run(entrypoint: str, *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                runtime_cmd(*common, "run", "--entrypoint", entrypoint, "--", *args),
                capture_output=True,
                text=True,
                timeout=60,
            )

        # the image's start script leaves a daemon behind; the next command still sees it
        started = run("/golem/run/simulate_observations_ctl.py", "--start")
        assert started.returncode == 0, started.stderr
        assert "started simulator" in started.stdout
        time.sleep(2.5)
        stats = run("/golem/run/simple_service.py", "--stats")
        assert stats.returncode == 0, stats.stderr
        assert stats.stdout.strip()

        isolated = run("/bin/sh", "-c", "id -u; pwd; echo x > /etc/forbidden || echo ro-etc")
        assert isolated.stdout.split() == ["1000", "/golem/work", "ro-etc"], isolated
        assert run("/bin/sh", "-c", "exit 7").returncode == 7
        # the work volume is the host folder exe-unit knows as W/work
        assert (workdir / "work" / "simulate_observations.pid").exists()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 15
    while _alive(payload) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(payload), "the sandbox outlived its exe-unit"
    assert runtime.read_payload_pid(workdir) is None
