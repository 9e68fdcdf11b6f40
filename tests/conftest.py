"""Session fixtures shared by every tier.

`control_plane` starts a real etcd + kube-apiserver (built by scripts/setup.sh) and installs
the generated CRD. If it cannot start, every test that needs it fails: nothing is skipped.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from golem_operator.devenv.controlplane import ControlPlane
from support.identities import RBAC_GROUPS, RBAC_TOKEN, RBAC_USER

ROOT = Path(__file__).resolve().parents[1]

# The real-network suite needs provider binaries built from the yagna source, which a fresh
# machine cannot obtain: it runs only through `make realnet-test` (scripts/realnet-test.sh).
collect_ignore = [] if os.environ.get("GOLEM_OPERATOR_REALNET") == "1" else ["realnet"]


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(extra_tokens={RBAC_TOKEN: (RBAC_USER, RBAC_GROUPS)}) as cp:
        cp.install_crds(ROOT / "crds")
        yield cp


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A fresh namespace per test (there is no namespace controller to delete one)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl_run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    return name
