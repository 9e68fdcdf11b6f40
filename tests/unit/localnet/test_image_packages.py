"""The local network's image packages and the task-package forms its deploy accepts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from golem_operator.localnet.config import ImageConfig
from golem_operator.localnet.images import (
    DeployError,
    ImageCatalog,
    TaskPackage,
    package_bytes,
    parse_task_package,
)

HEX = "ab" * 28


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"hash:sha3:{HEX}:http://127.0.0.1:1/x.gvmi", ("sha3", HEX, "http://127.0.0.1:1/x.gvmi")),
        (f"hash://sha3:0x{HEX}:http://h/x", ("sha3", HEX, "http://h/x")),
        (f"HASH://SHA3:0x{HEX.upper()}:http://h/x", ("sha3", HEX, "http://h/x")),
        (f"  hash:sha3:{HEX}:https://h/x?a=b  ", ("sha3", HEX, "https://h/x?a=b")),
    ],
)
def test_the_forms_a_real_exe_unit_accepts(text: str, expected: tuple[str, str, str]) -> None:
    assert parse_task_package(text) == TaskPackage(*expected)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # What the operator used to publish: a tag, a URL alone, a hash without a URL.
        ("tag:golem/simple-service:latest", "Invalid url: Missing hash"),
        ("url:http://127.0.0.1:1/x.gvmi", "Invalid url: Missing hash"),
        (f"hash:sha3:{HEX}:", f"Invalid url: hash:sha3:{HEX}:"),
        (f"hash:sha3:{HEX}", f"Invalid url: hash:sha3:{HEX}"),
        ("http://127.0.0.1:1/x.gvmi", "Invalid url: Missing hash"),
        ("", "Invalid url: Empty URL"),
        ("hash:sha3:abc:http://h/x", "Hex error: Odd number of digits"),
        ("hash::http://addr.com", "Invalid url: hash::http://addr.com"),
    ],
)
def test_refused_forms_get_the_exe_unit_error_texts(text: str, error: str) -> None:
    with pytest.raises(DeployError) as caught:
        parse_task_package(text)
    assert str(caught.value) == error


def _image(tmp_path: Path, name: str, content: str) -> Path:
    folder = tmp_path / name / "golem" / "run"
    folder.mkdir(parents=True)
    script = folder / "app.sh"
    script.write_text(content)
    script.chmod(0o755)
    return tmp_path / name


def test_a_package_hash_depends_on_the_files_only(tmp_path: Path) -> None:
    first = _image(tmp_path, "a", "echo hi\n")
    second = _image(tmp_path, "b", "echo hi\n")
    os.utime(second / "golem" / "run" / "app.sh", (1, 1))  # another mtime: same package
    assert package_bytes(first) == package_bytes(second)
    third = _image(tmp_path, "c", "echo bye\n")
    assert package_bytes(first) != package_bytes(third)


async def test_catalog_serves_registry_answers_and_moves_tags(tmp_path: Path) -> None:
    one = ImageConfig(tag="t/x:1", path=_image(tmp_path, "one", "1\n"))
    two = ImageConfig(tag="t/x:2", path=_image(tmp_path, "two", "2\n"))
    catalog = ImageCatalog([one, two])
    catalog.base_url = "http://127.0.0.1:9"
    first = catalog.lookup(tag="t/x:1")
    assert first is not None
    assert first.hash == hashlib.sha3_224(package_bytes(one.path)).hexdigest()
    info = catalog.info(first)
    assert info["sha3"] == first.hash
    assert info["http"] == f"http://127.0.0.1:9/download/{first.hash}"
    assert info["size"] == len(first.package)
    second = catalog.lookup(tag="t/x:2")
    assert second is not None
    catalog.retag("t/x:1", second.hash)
    assert catalog.lookup(tag="t/x:1") is second
    assert catalog.lookup(digest=first.hash) is first  # the old bits stay deployable by hash
    with pytest.raises(KeyError):
        catalog.retag("t/x:1", "0" * 56)


async def test_deploy_never_downloads_from_outside_loopback(tmp_path: Path) -> None:
    catalog = ImageCatalog([ImageConfig(tag="t/x:1", path=_image(tmp_path, "one", "1\n"))])
    with pytest.raises(DeployError, match=r"only from 127\.0\.0\.0/8"):
        await catalog.deploy(f"hash:sha3:{HEX}:http://192.0.2.1/x.gvmi")
    with pytest.raises(DeployError, match="Unsupported scheme: ftp"):
        await catalog.deploy(f"hash:sha3:{HEX}:ftp://127.0.0.1/x.gvmi")
    with pytest.raises(DeployError, match="Unsupported digest: sha2"):
        await catalog.deploy(f"hash:sha2:{HEX}:http://127.0.0.1/x.gvmi")
    with pytest.raises(DeployError, match="Missing hash"):
        await catalog.deploy(None)
