"""The image's install steps, replayed: the build stage's RUN lines in a clean directory, then
the installed `golem-operator` and `yagna` started the way the pod starts them (read-only root,
uid 65532, HOME under /tmp, no network but loopback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from imagekit import ReplayedImage, runtime_env, sandboxed

ROOT = Path(__file__).resolve().parents[3]


def run_in_image(image: ReplayedImage, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sandboxed(image, argv, env=runtime_env()),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_build_installs_exactly_the_locked_set(replayed_image: ReplayedImage) -> None:
    assert "No broken requirements found" in replayed_image.log
    frozen = subprocess.run(
        [str(replayed_image.bin("pip")), "freeze", "--exclude", "golem-operator"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    locked = [
        line
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert sorted(frozen.lower().split()) == sorted(line.lower() for line in locked)
    # The build tools stay out of the runtime environment.
    assert "setuptools" not in frozen and "wheel==" not in frozen


def test_golem_operator_starts_read_only_as_non_root(replayed_image: ReplayedImage) -> None:
    result = run_in_image(replayed_image, "golem-operator", "--help")
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "crd" in result.stdout
    crd = run_in_image(replayed_image, "golem-operator", "crd")
    assert crd.returncode == 0, crd.stderr
    # Package data and imports work from the installed wheel (not the source tree).
    documents = [d for d in yaml.safe_load_all(crd.stdout) if d]
    assert {d["kind"] for d in documents} == {"CustomResourceDefinition"}
    assert [d["metadata"]["name"] for d in documents] == [
        "golemservices.services.golem.network",
        "golemserviceinstances.services.golem.network",
    ]
    whoami = run_in_image(replayed_image, "python3", "-c", "import os; print(os.getuid())")
    assert whoami.stdout.strip() == "65532"
    # The root filesystem really is read-only in the sandbox.
    write = run_in_image(replayed_image, "sh", "-c", f"touch {replayed_image.venv}/x")
    assert write.returncode != 0


def test_run_accepts_the_arguments_the_chart_passes(replayed_image: ReplayedImage) -> None:
    result = run_in_image(replayed_image, "golem-operator", "run", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--namespace", "--all-namespaces", "--standalone", "--peering", "--priority"):
        assert option in result.stdout, f"`golem-operator run` lacks {option}"


def test_yagna_runs_from_the_image(replayed_image: ReplayedImage) -> None:
    result = run_in_image(replayed_image, "yagna", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("yagna 0.17.6")
