"""Replays the Dockerfile's build stage outside a container engine, and runs image commands in a
bubblewrap sandbox shaped like the chart's pod (read-only root, non-root uid, /tmp writable,
loopback-only network).

Used by test_image_replay.py and test_yagna_sidecar.py. The build stage's COPY, ENV, WORKDIR
and RUN instructions are executed in order in a temporary directory, with the image's absolute
paths (/opt/...) mapped into it. Packages come from a wheel cache keyed by the lock files
(~/.cache/golem-operator/wheels/<hash>), filled once with `pip download` and then used with
--no-index, so later runs never touch the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-build.lock")
CACHE_ROOT = Path(
    os.environ.get("GOLEM_OPERATOR_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "golem-operator"
)
RUNTIME_UID = 65532


@dataclass(frozen=True)
class ReplayedImage:
    venv: Path  # the image's /opt/golem-operator
    sidecar_script: Path  # the image's /usr/local/bin/yagna-sidecar.sh
    log: str  # output of the RUN steps

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def wheel_cache() -> Path:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in LOCKS)).hexdigest()[:16]
    cache = CACHE_ROOT / "wheels" / digest
    if not (cache / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache)]
        for lock in LOCKS:
            args += ["-r", str(lock)]
        subprocess.run(args, check=True, capture_output=True, text=True, timeout=1200)
        (cache / ".complete").touch()
    return cache


def _stage(text: str, name: str) -> list[tuple[str, str]]:
    """The instructions of one named stage: (INSTRUCTION, arguments), continuations joined."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    steps: list[tuple[str, str]] = []
    inside = False
    for line in joined.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "FROM":
            inside = rest.strip().lower().endswith(f" as {name}")
            continue
        if inside:
            steps.append((word.upper(), rest.strip()))
    if not steps:
        raise AssertionError(f"no stage {name!r} in the Dockerfile")
    return steps


def replay_build_stage(workdir: Path) -> ReplayedImage:
    """Run the build stage's steps for real; its /opt paths land under `workdir`/opt."""
    steps = _stage(DOCKERFILE.read_text(), "build")
    cache = wheel_cache()
    image_root = workdir / "image"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir / "home"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(cache),
    }
    cwd = image_root
    log: list[str] = []

    def in_root(path: str) -> Path:
        return image_root / path.lstrip("/")

    for word, args in steps:
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                # Absolute image paths are mapped into the replay's root.
                env[key] = str(in_root(value)) if value.startswith("/") else value
        elif word == "WORKDIR":
            cwd = in_root(args)
            cwd.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, dest = args.split()
            assert not any(s.startswith("--") for s in sources), args
            target = cwd / dest if not dest.startswith("/") else in_root(dest)
            for source in sources:
                origin = ROOT / source.rstrip("/")
                if origin.is_dir():
                    shutil.copytree(
                        origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif word == "RUN":
            result = subprocess.run(
                ["/bin/sh", "-c", args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=1200,
            )
            log.append(f"$ {args}\n{result.stdout}{result.stderr}")
            if result.returncode != 0:
                raise AssertionError(f"RUN failed ({result.returncode}):\n{log[-1][-4000:]}")
        elif word not in ("ARG", "LABEL"):
            raise AssertionError(f"the replay does not know {word}; extend imagekit.py")
    venv = Path(env["VENV"])
    return ReplayedImage(venv=venv, sidecar_script=_copy_sidecar(image_root), log="\n".join(log))


def _copy_sidecar(image_root: Path) -> Path:
    """The runtime stage's `COPY --chmod=... scripts/yagna-sidecar.sh <dest>`, replayed."""
    final = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    match = re.search(r"^COPY --chmod=([0-7]+) (scripts/yagna-sidecar\.sh) (\S+)$", final, re.M)
    assert match, "the runtime stage no longer copies scripts/yagna-sidecar.sh with --chmod"
    target = image_root / match.group(3).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / match.group(2), target)
    target.chmod(int(match.group(1), 8))
    return target


def runtime_env() -> dict[str, str]:
    """The runtime (last) stage's ENV values (HOME, XDG dirs, ...), as the image sets them."""
    text = DOCKERFILE.read_text()
    last_stage = "FROM base AS runtime\n" + text.rsplit("\nFROM ", 1)[1].split("\n", 1)[1]
    env: dict[str, str] = {}
    for word, args in _stage(last_stage, "runtime"):
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    return env


def sandboxed(
    image: ReplayedImage,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    writable: dict[Path, str] | None = None,
) -> list[str]:
    """A bwrap command line: read-only root, fresh /tmp, uid 65532, only loopback, the image's
    virtualenv visible at its replay path, `writable` host dirs bound at the given paths."""
    cmd = [
        "bwrap",
        "--ro-bind", "/", "/",
        "--tmpfs", "/tmp",
        "--dev", "/dev",
        "--proc", "/proc",
        "--ro-bind", str(image.venv), str(image.venv),
        "--ro-bind", str(image.sidecar_script), "/tmp/bin/yagna-sidecar.sh",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid", str(RUNTIME_UID),
        "--gid", str(RUNTIME_UID),
        "--clearenv",
    ]  # fmt: skip
    for host, inside in (writable or {}).items():
        cmd += ["--bind", str(host), inside]
    path = f"{image.venv / 'bin'}:/tmp/bin:/usr/local/bin:/usr/bin:/bin"
    for key, value in {**env, "PATH": path}.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--", *argv]
