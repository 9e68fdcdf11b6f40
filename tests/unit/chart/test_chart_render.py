"""The Helm chart, rendered offline: lint, Kubernetes schemas, security, RBAC, CRD copies.

`helm template` with the default values and each file in values/, every object validated
strictly against the Kubernetes 1.36 schemas shipped by kubernetes-validate (no network), custom
resources against their CRDs. Installing into a real API server is tests/integration/chart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chartkit import (
    CHART,
    KUBE_VERSION,
    ROOT,
    VALUES_DIR,
    HelmError,
    Manifest,
    by_kind,
    containers,
    crd_schemas,
    one,
    render,
    rules_as_set,
    run_helm,
    validate_offline,
)

VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml"))
SCENARIOS = [None, *VALUES_FILES]
SCENARIO_IDS = ["default", *(p.stem for p in VALUES_FILES)]

GS = "services.golem.network"
#: What the operator does with the Kubernetes API, resource by resource (what RBAC must grant).
NAMESPACED_GRANTS = {
    (GS, "golemservices", "get"),
    (GS, "golemservices", "list"),
    (GS, "golemservices", "watch"),
    (GS, "golemservices", "patch"),
    (GS, "golemservices/status", "get"),
    (GS, "golemservices/status", "patch"),
    (GS, "golemserviceinstances", "get"),
    (GS, "golemserviceinstances", "list"),
    (GS, "golemserviceinstances", "watch"),
    (GS, "golemserviceinstances", "create"),
    (GS, "golemserviceinstances", "patch"),
    (GS, "golemserviceinstances", "delete"),
    (GS, "golemserviceinstances/status", "get"),
    (GS, "golemserviceinstances/status", "patch"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("", "secrets", "get"),
    ("", "configmaps", "get"),
    ("", "services", "get"),
    ("", "services", "create"),
    ("", "services", "patch"),
    ("", "services", "delete"),
    ("discovery.k8s.io", "endpointslices", "get"),
    ("discovery.k8s.io", "endpointslices", "create"),
    ("discovery.k8s.io", "endpointslices", "patch"),
    ("discovery.k8s.io", "endpointslices", "delete"),
}
CRD_SCAN_GRANTS = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}
NAMESPACE_GRANTS = {("", "namespaces", "list"), ("", "namespaces", "watch")}


def peering_grants(resource: str) -> set[tuple[str, str, str]]:
    return {("kopf.dev", resource, verb) for verb in ("get", "list", "watch", "patch")}


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def rendered(helm_home: Path) -> dict[str, list[Manifest]]:
    return {
        name: render(helm_home, [path] if path else [])
        for name, path in zip(SCENARIO_IDS, SCENARIOS, strict=True)
    }


# -- lint and schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_helm_lint_strict(helm_home: Path, values: Path | None) -> None:
    args = ["lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART)]
    if values:
        args += ["-f", str(values)]
    result = run_helm(args, helm_home, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_every_object_validates_against_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    objects = rendered[scenario]
    assert len(objects) >= 6
    # The chart's own CRDs validate custom resources (kopf peering objects); the ServiceMonitor
    # CRD belongs to the Prometheus Operator and is checked structurally below.
    typed = [o for o in objects if o["kind"] != "ServiceMonitor"]
    assert validate_offline(typed, crd_schemas(objects)) == []


def test_offline_validation_catches_a_broken_object(rendered: dict[str, list[Manifest]]) -> None:
    original = yaml.safe_dump(one(rendered["default"], "Deployment"))
    unknown_field = yaml.safe_load(original)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = 1
    wrong_type = yaml.safe_load(original)
    wrong_type["spec"]["replicas"] = "one"
    assert validate_offline([yaml.safe_load(original)], {}) == []
    (problem,) = validate_offline([unknown_field], {})
    assert "runAsNonRot" in problem
    (problem,) = validate_offline([wrong_type], {})
    assert "'one' is not of type 'integer'" in problem


# -- the Deployment ----------------------------------------------------------------------------


def test_default_deployment_is_one_recreated_replica_with_a_yagna_sidecar(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["default"]
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (yagna,) = pod["initContainers"]
    assert yagna["name"] == "yagna" and yagna["restartPolicy"] == "Always"
    assert yagna["command"] == ["/usr/local/bin/yagna-sidecar.sh"]
    env = {e["name"]: e.get("value") for e in yagna["env"]}
    mounts = {m["name"]: m["mountPath"] for m in yagna["volumeMounts"]}
    assert mounts["yagna-data"] == env["YAGNA_DATADIR"]
    assert env["GOLEM_APPKEY_FILE"].startswith(mounts["appkey"] + "/")
    # The operator starts only when the sidecar has written the key.
    assert yagna["startupProbe"]["exec"]["command"] == ["test", "-s", env["GOLEM_APPKEY_FILE"]]

    volumes = {v["name"]: v for v in pod["volumes"]}
    pvc = one(objects, "PersistentVolumeClaim")
    assert volumes["yagna-data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert volumes["appkey"]["emptyDir"]["medium"] == "Memory"

    (operator,) = pod["containers"]
    op_env = {e["name"]: e for e in operator["env"]}
    assert op_env["GOLEM_URL"]["value"] == env["YAGNA_API_URL"] == "http://127.0.0.1:7465"
    # Image tags resolve through the public Golem registry unless golem.imageRegistry says else.
    assert op_env["GOLEM_OPERATOR_IMAGE_REGISTRY"]["value"] == "https://registry.golem.network"
    assert op_env["GOLEM_APPKEY_FILE"]["value"] == env["GOLEM_APPKEY_FILE"]
    assert {"name": "appkey", "mountPath": mounts["appkey"], "readOnly": True} in operator[
        "volumeMounts"
    ]
    assert operator["args"] == ["run", "--all-namespaces", "--standalone"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    assert op_env["GOLEM_OPERATOR_METRICS_PORT"]["value"] == "9090"
    assert op_env["GOLEM_OPERATOR_HEALTH_PORT"]["value"] == "8080"
    # spec.ports listeners bind to the pod's IP, which the EndpointSlices name.
    assert op_env["GOLEM_OPERATOR_POD_IP"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_pods_are_locked_down(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    for deployment in by_kind(rendered[scenario], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        mounted_tmp = set()
        for container in containers(deployment):
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]
            assert "livenessProbe" in container
            # The image's HOME and XDG dirs are under /tmp: it must be a writable volume.
            if any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]):
                mounted_tmp.add(container["name"])
        assert mounted_tmp == {c["name"] for c in containers(deployment)}


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_the_app_key_never_appears_in_the_pod_spec(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    for deployment in by_kind(rendered[scenario], "Deployment"):
        for container in containers(deployment):
            for env in container.get("env", []):
                if "APPKEY" in env["name"] and env["name"] != "YAGNA_APPKEY_NAME":
                    assert env["name"] == "GOLEM_APPKEY_FILE", env
    assert by_kind(rendered[scenario], "Secret") == []


def test_external_yagna_with_a_standby(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["external-standby"]
    primary = one(objects, "Deployment", "golem-golem-operator")
    standby = one(objects, "Deployment", "golem-golem-operator-standby")
    assert by_kind(objects, "PersistentVolumeClaim") == []
    assert by_kind(objects, "Service") == []
    priorities = {}
    for deployment in (primary, standby):
        pod = deployment["spec"]["template"]["spec"]
        assert "initContainers" not in pod
        (operator,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in operator["env"]}
        assert env["GOLEM_URL"] == "http://yagna.golem-system.svc:7465"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["appkey"]["secret"]["secretName"] == "yagna-appkey"
        assert volumes["appkey"]["secret"]["items"] == [{"key": "key", "path": "appkey"}]
        assert env["GOLEM_APPKEY_FILE"] == "/var/run/golem-operator/appkey"
        assert "--peering=golem-golem-operator" in operator["args"]
        (priority,) = [a for a in operator["args"] if a.startswith("--priority=")]
        priorities[deployment["metadata"]["name"]] = int(priority.split("=")[1])
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert priorities == {"golem-golem-operator": 200, "golem-golem-operator-standby": 100}
    # Distinct selectors: neither Deployment adopts the other's pod.
    assert primary["spec"]["selector"]["matchLabels"] != standby["spec"]["selector"]["matchLabels"]
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "golem-golem-operator"


# -- RBAC -------------------------------------------------------------------------------------


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["default"]
    assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
    role = one(objects, "ClusterRole")
    assert rules_as_set(role) == NAMESPACED_GRANTS | CRD_SCAN_GRANTS | NAMESPACE_GRANTS
    binding = one(objects, "ClusterRoleBinding")
    sa = one(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "golem-system"}
    ]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_peering_adds_only_the_peering_resource(rendered: dict[str, list[Manifest]]) -> None:
    role = one(rendered["external-standby"], "ClusterRole")
    assert rules_as_set(role) == (
        NAMESPACED_GRANTS
        | CRD_SCAN_GRANTS
        | NAMESPACE_GRANTS
        | peering_grants("clusterkopfpeerings")
    )


def test_namespaced_rbac_is_a_role_per_namespace(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["namespaced"]
    cluster_role = one(objects, "ClusterRole")
    assert rules_as_set(cluster_role) == CRD_SCAN_GRANTS | NAMESPACE_GRANTS
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_as_set(role) == NAMESPACED_GRANTS | peering_grants("kopfpeerings")
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    sa = one(objects, "ServiceAccount")["metadata"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[0]["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]
    operator = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert operator["args"][:3] == ["run", "--namespace=team-a", "--namespace=team-b"]
    assert "--peering=golem-peering" in operator["args"]
    peerings = by_kind(objects, "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("team-a", "golem-peering"),
        ("team-b", "golem-peering"),
    ]
    assert by_kind(objects, "ClusterKopfPeering") == []


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_no_wildcards_and_no_writes_but_events_and_instances(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    writes = {"create", "update", "delete", "deletecollection", "escalate", "bind", "impersonate"}
    for role in by_kind(rendered[scenario], "Role") + by_kind(rendered[scenario], "ClusterRole"):
        for group, resource, verb in rules_as_set(role):
            assert "*" not in (group, resource, verb)
            if verb in writes:
                # The operator creates and removes only Events, its instance objects, and the
                # Service and EndpointSlice of a GolemService's spec.ports.
                assert resource in (
                    "events",
                    "golemserviceinstances",
                    "services",
                    "endpointslices",
                ), (group, resource, verb)
                assert verb in ("create", "delete"), (group, resource, verb)


# -- CRDs -------------------------------------------------------------------------------------


CRD_FILES = ("golemservices.yaml", "golemserviceinstances.yaml")
OWN_CRDS = {"golemservices.services.golem.network", "golemserviceinstances.services.golem.network"}


@pytest.mark.parametrize("filename", CRD_FILES)
def test_chart_crd_is_identical_to_the_generated_one(filename: str) -> None:
    generated = (ROOT / "crds" / filename).read_text()
    copy = (CHART / "crds" / filename).read_text()
    assert copy == generated, (
        f"charts/golem-operator/crds/{filename} drifted from crds/{filename}: "
        f"cp crds/{filename} charts/golem-operator/crds/"
    )


def test_crds_as_templates_renders_the_same_crds_kept_on_uninstall(
    rendered: dict[str, list[Manifest]], helm_home: Path
) -> None:
    templated = render(helm_home, sets={"crds.asTemplates": "true"}, include_crds=False)
    crds = {c["metadata"]["name"]: c for c in by_kind(templated, "CustomResourceDefinition")}
    assert set(crds) == OWN_CRDS
    for filename in CRD_FILES:
        generated = yaml.safe_load((ROOT / "crds" / filename).read_text())
        crd = crds[generated["metadata"]["name"]]
        assert crd["spec"] == generated["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # Without the option the CRD only comes from crds/ (not a release object).
    plain = render(helm_home, include_crds=False)
    assert by_kind(plain, "CustomResourceDefinition") == []


def test_peering_crds_ship_only_with_peering(rendered: dict[str, list[Manifest]]) -> None:
    def crd_names(scenario: str) -> set[str]:
        return {
            c["metadata"]["name"] for c in by_kind(rendered[scenario], "CustomResourceDefinition")
        }

    assert crd_names("default") == OWN_CRDS
    peering = {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert crd_names("namespaced") == {*OWN_CRDS, *peering}
    assert crd_names("external-standby") >= peering


# -- metrics ----------------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["monitoring-crd-templates"]
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["golem-system"]}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    # The Service reaches the container's metrics port.
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    operator = deployment["spec"]["template"]["spec"]["containers"][0]
    assert port["targetPort"] in {p["name"] for p in operator["ports"]}
    assert operator["image"] == (
        "registry.example/golem-operator@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["yagna-data"]["persistentVolumeClaim"]["claimName"] == "yagna-data"
    assert by_kind(objects, "PersistentVolumeClaim") == []
    assert by_kind(objects, "ServiceAccount") == []
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "golem-operator-sa"


# -- values that must be refused --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"standby.enabled": "true", "peering.enabled": "true"}, "external"),
        ({"yagna.mode": "external"}, "url"),
        ({"operator.logFormat": "xml"}, "logFormat"),
        ({"containerSecurityContext.readOnlyRootFilesystem": "false"}, "readOnlyRootFilesystem"),
        ({"operator.watchNamespaces[0]": "Not_A_Namespace"}, "watchNamespaces"),
        ({"unknownKey": "1"}, "unknownKey"),
    ],
)
def test_bad_values_are_refused(helm_home: Path, sets: dict[str, str], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(helm_home, sets=sets)
