"""`helm install` of the chart into a real kube-apiserver: every object is created, the RBAC
grants what the operator needs and refuses the rest (checked with `kubectl auth can-i` as the
chart's ServiceAccount), CRDs follow crds.asTemplates through install, upgrade and uninstall.

No kubelet runs in the local control plane, so no pod starts: the objects are what is checked.
The operator itself running under these permissions is tested elsewhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from golem_operator.devenv.controlplane import ControlPlane
from unit.chart.chartkit import CHART, VALUES_DIR, Manifest, run_helm

GOLEMSERVICES_CRD = "golemservices.services.golem.network"


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_namespace(cp: ControlPlane, name: str) -> str:
    cp.kubectl_run("create", "namespace", name)
    return name


def helm_install(
    cp: ControlPlane,
    home: Path,
    release: str,
    namespace: str,
    *extra: str,
) -> tuple[list[Manifest], str]:
    """Install; returns the release's objects (from `helm get manifest`) and helm's output."""
    kube = ["--kubeconfig", str(cp.kubeconfig)]
    out = run_helm(["install", release, str(CHART), "-n", namespace, *kube, *extra], home).stdout
    manifest = run_helm(["get", "manifest", release, "-n", namespace, *kube], home).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc], out


def assert_all_created(cp: ControlPlane, objects: list[Manifest], release: str) -> None:
    assert objects
    for obj in objects:
        meta = obj["metadata"]
        args = ["get", f"{obj['kind']}.{obj['apiVersion'].split('/')[0]}"]
        if "/" not in obj["apiVersion"]:  # core group
            args = ["get", obj["kind"]]
        args.append(meta["name"])
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        live = json.loads(cp.kubectl_run(*args, "-o", "json").stdout)
        annotations = live["metadata"].get("annotations", {})
        assert annotations.get("meta.helm.sh/release-name") == release, (obj["kind"], meta)
        assert live["metadata"]["labels"]["app.kubernetes.io/instance"] == release


def can_i(cp: ControlPlane, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={sa}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    result = cp.kubectl_run(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def test_default_install_creates_every_object_with_cluster_wide_rbac(
    control_plane: ControlPlane, helm_home: Path
) -> None:
    cp = control_plane
    release, namespace = fresh("gdef"), create_namespace(cp, fresh("golem-system"))
    objects, output = helm_install(cp, helm_home, release, namespace)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "PersistentVolumeClaim",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment",
        ]
    )
    assert_all_created(cp, objects, release)
    fullname = f"{release}-golem-operator"
    assert f"rollout status deployment/{fullname}" in output  # NOTES.txt

    sa = f"system:serviceaccount:{namespace}:{fullname}"
    elsewhere = create_namespace(cp, fresh("apps"))
    for verb, resource in [
        ("watch", "golemservices.services.golem.network"),
        ("patch", "golemservices.services.golem.network"),
        ("patch", "golemservices.services.golem.network/status"),
        ("get", "secrets"),
        ("get", "configmaps"),
        ("create", "events"),
        ("create", "events.events.k8s.io"),
    ]:
        assert can_i(cp, sa, verb, resource, elsewhere), (verb, resource)
    for verb, resource in [
        ("create", "golemservices.services.golem.network"),
        ("update", "golemservices.services.golem.network"),
        ("delete", "golemservices.services.golem.network"),
        ("list", "secrets"),
        ("create", "secrets"),
        ("create", "pods"),
        ("patch", "clusterkopfpeerings.kopf.dev"),
    ]:
        assert not can_i(cp, sa, verb, resource, elsewhere), (verb, resource)
    assert can_i(cp, sa, "watch", "customresourcedefinitions", None)
    assert can_i(cp, sa, "watch", "namespaces", None)
    assert not can_i(cp, sa, "create", "customresourcedefinitions", None)


def test_namespaced_install_confines_the_operator_to_its_namespaces(
    control_plane: ControlPlane, helm_home: Path
) -> None:
    cp = control_plane
    release, namespace = fresh("gns"), create_namespace(cp, fresh("golem-system"))
    team_a, team_b = create_namespace(cp, fresh("team-a")), create_namespace(cp, fresh("team-b"))
    objects, _ = helm_install(
        cp,
        helm_home,
        release,
        namespace,
        "-f",
        str(VALUES_DIR / "namespaced.yaml"),
        "--set",
        f"operator.watchNamespaces={{{team_a},{team_b}}}",
    )
    assert_all_created(cp, objects, release)
    by_kind: dict[str, list[Manifest]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    assert sorted(r["metadata"]["namespace"] for r in by_kind["Role"]) == sorted([team_a, team_b])
    assert len(by_kind["RoleBinding"]) == 2 and len(by_kind["KopfPeering"]) == 2
    # The kopf peering CRDs came from the subchart's crds/ (peering.enabled) and are served.
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        cp.wait_established(crd, timeout=30)

    sa = f"system:serviceaccount:{namespace}:{release}-golem-operator"
    for watched in (team_a, team_b):
        assert can_i(cp, sa, "patch", "golemservices.services.golem.network", watched)
        assert can_i(cp, sa, "get", "secrets", watched)
        assert can_i(cp, sa, "patch", "kopfpeerings.kopf.dev", watched)
    outsider = create_namespace(cp, fresh("other"))
    for other in (outsider, namespace):
        assert not can_i(cp, sa, "get", "secrets", other)
        assert not can_i(cp, sa, "list", "golemservices.services.golem.network", other)
    assert not can_i(cp, sa, "get", "secrets", None)
    assert can_i(cp, sa, "watch", "namespaces", None)  # kopf observes them even by exact name
    assert not can_i(cp, sa, "delete", "namespaces", None)
    assert not can_i(cp, sa, "patch", "clusterkopfpeerings.kopf.dev", None)
    assert can_i(cp, sa, "list", "customresourcedefinitions", None)


def test_external_yagna_with_standby_install(control_plane: ControlPlane, helm_home: Path) -> None:
    cp = control_plane
    release, namespace = fresh("gext"), create_namespace(cp, fresh("golem-system"))
    objects, output = helm_install(
        cp, helm_home, release, namespace, "-f", str(VALUES_DIR / "external-standby.yaml")
    )
    assert_all_created(cp, objects, release)
    deployments = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")
    assert deployments == [f"{release}-golem-operator", f"{release}-golem-operator-standby"]
    peering = json.loads(
        cp.kubectl_run(
            "get", "clusterkopfpeering", f"{release}-golem-operator", "-o", "json"
        ).stdout
    )
    assert peering["kind"] == "ClusterKopfPeering"
    sa = f"system:serviceaccount:{namespace}:{release}-golem-operator"
    assert can_i(cp, sa, "patch", "clusterkopfpeerings.kopf.dev", None)
    assert "standby" in output


@pytest.fixture(scope="module")
def empty_cluster() -> Iterator[ControlPlane]:
    """A control plane of its own, without the CRD: the chart must bring it."""
    with ControlPlane() as cp:
        yield cp


def crd_labels_and_annotations(cp: ControlPlane) -> tuple[dict[str, str], dict[str, str]]:
    crd = json.loads(cp.kubectl_run("get", "crd", GOLEMSERVICES_CRD, "-o", "json").stdout)
    return crd["metadata"].get("labels", {}), crd["metadata"].get("annotations", {})


def test_crds_from_crds_dir_on_a_fresh_cluster(
    empty_cluster: ControlPlane, helm_home: Path
) -> None:
    cp = empty_cluster
    release, namespace = fresh("gcrd"), create_namespace(cp, fresh("golem-system"))
    objects, _ = helm_install(cp, helm_home, release, namespace)
    cp.wait_established(GOLEMSERVICES_CRD, timeout=30)
    # Installed from crds/: present, but not a release object.
    assert all(o["kind"] != "CustomResourceDefinition" for o in objects)
    _, annotations = crd_labels_and_annotations(cp)
    assert "meta.helm.sh/release-name" not in annotations
    # Without peering, no kopf peering CRDs were installed.
    served = cp.kubectl_run("get", "crd", "-o", "name").stdout
    assert "kopf.dev" not in served
    run_helm(["uninstall", release, "-n", namespace, "--kubeconfig", str(cp.kubeconfig)], helm_home)


def test_crds_as_templates_are_upgraded_and_kept(
    empty_cluster: ControlPlane, helm_home: Path
) -> None:
    cp = empty_cluster
    kube = ["--kubeconfig", str(cp.kubeconfig)]
    release, namespace = fresh("gtpl"), create_namespace(cp, fresh("golem-system"))
    # If the CRD exists (from an earlier crds/ install), Helm must take it over.
    objects, _ = helm_install(
        cp,
        helm_home,
        release,
        namespace,
        "--set",
        "crds.asTemplates=true",
        "--skip-crds",
        "--take-ownership",
    )
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"] == [
        GOLEMSERVICES_CRD,
        "golemserviceinstances.services.golem.network",
    ]
    labels, annotations = crd_labels_and_annotations(cp)
    assert annotations["meta.helm.sh/release-name"] == release
    assert annotations["helm.sh/resource-policy"] == "keep"
    # An upgrade rewrites the CRD from the chart: a label change shows it was applied.
    run_helm(
        [
            "upgrade", release, str(CHART), "-n", namespace, *kube,
            "--reuse-values", "--set", "nameOverride=golem-op",
        ],
        helm_home,
    )  # fmt: skip
    labels, _ = crd_labels_and_annotations(cp)
    assert labels["app.kubernetes.io/name"] == "golem-op"
    # Uninstall keeps the CRD (and so every GolemService).
    run_helm(["uninstall", release, "-n", namespace, *kube], helm_home)
    cp.kubectl_run("get", "crd", GOLEMSERVICES_CRD)
