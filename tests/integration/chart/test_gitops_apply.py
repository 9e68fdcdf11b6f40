"""GitOps behaviour of a GolemService against the real API server: server-side apply of the same
manifest twice is a no-op with no diff, and the operator's kind of writes (its finalizer and
annotations on metadata, status through the subresource, under its own field manager) never
conflict with the GitOps tool's apply. A control case shows that a write to spec would.

The operator process itself is not involved here: its writes are made with kubectl under the
operator's field manager, exactly the fields the operator is allowed to touch.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from golem_operator import constants
from golem_operator.devenv.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[3]
GITOPS_MANAGER = "argocd-controller"


def manifest_file(tmp_path: Path, namespace: str) -> Path:
    body = yaml.safe_load((ROOT / "examples" / "simple-service.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def apply(cp: ControlPlane, path: Path, *extra: str, check: bool = True) -> str:
    result = cp.kubectl_run(
        "apply", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-f", str(path), *extra,
        check=check,
    )  # fmt: skip
    return result.stdout + result.stderr


def diff(cp: ControlPlane, path: Path) -> tuple[int, str]:
    """`kubectl diff --server-side`: 0 no change, 1 a change, >1 an error such as a conflict."""
    result = cp.kubectl_run(
        "diff", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-f", str(path), check=False
    )
    return result.returncode, result.stdout + result.stderr


def live(cp: ControlPlane, namespace: str, name: str) -> dict[str, object]:
    out = cp.kubectl_run(
        "get", "golemservice", name, "-n", namespace, "-o", "json", "--show-managed-fields"
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_applying_twice_is_a_no_op(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    path = manifest_file(tmp_path, namespace)
    apply(control_plane, path)
    first = live(control_plane, namespace, "simple-service")
    assert diff(control_plane, path) == (0, "")
    output = apply(control_plane, path)
    assert "serverside-applied" in output
    second = live(control_plane, namespace, "simple-service")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # type: ignore[index]
    assert second["metadata"]["generation"] == 1  # type: ignore[index]


def test_operator_writes_do_not_conflict_with_gitops(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    path = manifest_file(tmp_path, namespace)
    apply(cp, path)
    name = "simple-service"
    operator = f"--field-manager={constants.FIELD_MANAGER}"
    progress_annotation = f"{constants.ANNOTATION_PREFIX}/last-handled-configuration"
    cp.kubectl_run(
        "patch", "golemservice", name, "-n", namespace, "--type=merge", operator,
        "-p", json.dumps({"metadata": {
            "finalizers": [constants.FINALIZER],
            "annotations": {progress_annotation: '{"spec": {}}'},
        }}),
    )  # fmt: skip
    cp.kubectl_run(
        "patch", "golemservice", name, "-n", namespace, "--type=merge", operator,
        "--subresource=status",
        "-p", json.dumps({"status": {"phase": "Running", "observedGeneration": 1, "replicas": 2}}),
    )  # fmt: skip
    before = live(cp, namespace, name)

    assert diff(cp, path) == (0, "")
    output = apply(cp, path)  # no --force-conflicts: a conflict would fail here
    assert "conflict" not in output.lower()
    after = live(cp, namespace, name)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # type: ignore[index]
    assert after["metadata"]["finalizers"] == [constants.FINALIZER]  # type: ignore[index]
    assert progress_annotation in after["metadata"]["annotations"]  # type: ignore[index]
    assert after["status"]["phase"] == "Running"  # type: ignore[index]
    managers = {entry["manager"] for entry in after["metadata"]["managedFields"]}  # type: ignore[index]
    assert {GITOPS_MANAGER, constants.FIELD_MANAGER} <= managers


def test_a_write_to_spec_would_conflict(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The control case: why the operator must never write spec."""
    cp = control_plane
    path = manifest_file(tmp_path, namespace)
    apply(cp, path)
    cp.kubectl_run(
        "patch", "golemservice", "simple-service", "-n", namespace, "--type=merge",
        f"--field-manager={constants.FIELD_MANAGER}", "-p", '{"spec": {"replicas": 5}}',
    )  # fmt: skip
    code, output = diff(cp, path)
    assert code > 1 and "conflict" in output.lower()
    result = cp.kubectl_run(
        "apply", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-f", str(path),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "conflict" in result.stderr.lower()
    assert constants.FIELD_MANAGER in result.stderr


def test_kustomize_example_builds_and_is_accepted_by_the_crd(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    overlay = ROOT / "examples" / "kustomize" / "overlays" / "production"
    built = control_plane.kubectl_run("kustomize", str(overlay)).stdout
    (service,) = [doc for doc in yaml.safe_load_all(built) if doc]
    assert service["metadata"]["namespace"] == "observations-prod"
    assert service["metadata"]["labels"]["app.kubernetes.io/part-of"] == "observations"
    assert service["spec"]["replicas"] == 3
    assert service["spec"]["market"]["payment"]["network"] == "polygon"
    assert service["spec"]["lifecycle"]["run"]["intervalSeconds"] == 10  # from the base
    # The API server validates it against the CRD's schema (and CEL rules).
    service["metadata"]["namespace"] = namespace
    path = tmp_path / "built.yaml"
    path.write_text(yaml.safe_dump(service))
    apply(control_plane, path, "--dry-run=server")
