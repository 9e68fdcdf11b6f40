"""Helpers for the chart tests: find helm, render the chart, validate objects offline.

Used by tests/unit/chart (render + schema checks) and tests/integration/chart (install into the
local API server). helm comes from the control-plane build (scripts/build-control-plane.sh):
$GOLEM_OPERATOR_BIN, .env.tools, or the cache directory it writes to. A missing helm fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "golem-operator"
VALUES_DIR = Path(__file__).resolve().parent / "values"
#: The version of the local API server (scripts/build-control-plane.sh) and of the schemas.
KUBE_VERSION = "1.36.3"
SCHEMA_VERSION = "1.36.0"
CACHE_ROOT = Path(
    os.environ.get("GOLEM_OPERATOR_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "golem-operator"
)

Manifest = dict[str, Any]


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def helm_binary() -> Path:
    configured = os.environ.get("GOLEM_OPERATOR_BIN")
    env_file = ROOT / ".env.tools"
    if not configured and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("export GOLEM_OPERATOR_BIN="):
                configured = line.split("=", 1)[1].strip().strip('"')
    candidates = [Path(configured) / "helm"] if configured else []
    candidates += sorted((CACHE_ROOT / "control-plane").glob("*/bin/helm"), reverse=True)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(
        "helm not found: run scripts/setup.sh (it builds helm into the control-plane cache)"
    )


def helm_env(home: Path) -> dict[str, str]:
    """helm's own state in a private directory, never the user's config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return env


def run_helm(
    args: Sequence[str], home: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        env=helm_env(home),
        timeout=300,
    )
    if check and result.returncode != 0:
        raise HelmError(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


def values_args(
    values_files: Iterable[Path] = (), sets: Mapping[str, str] | None = None
) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render(
    home: Path,
    values_files: Iterable[Path] = (),
    *,
    sets: Mapping[str, str] | None = None,
    release: str = "golem",
    namespace: str = "golem-system",
    include_crds: bool = True,
) -> list[Manifest]:
    """`helm template` of the chart: every rendered object, CRDs from crds/ included."""
    args = [
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *values_args(values_files, sets),
    ]
    if include_crds:
        args.append("--include-crds")
    out = run_helm(args, home).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def crd_schemas(objects: Iterable[Manifest]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, from the CRDs among the rendered objects."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in by_kind(objects, "CustomResourceDefinition"):
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate_offline(
    objects: Sequence[Manifest], extra_schemas: Mapping[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """Problems found validating each object against the Kubernetes schemas (strict), or, for
    custom resources, against their CRD's schema. Empty when all are valid."""
    problems: list[str] = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            schema = extra_schemas.get(key)
            if schema is None:
                problems.append(f"{where}: no schema for {key}")
                continue
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            for error in jsonschema.Draft7Validator(schema).iter_errors(body):
                problems.append(f"{where}: {error.message}")
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {error.message} at {list(error.path)}")
    return problems


def containers(deployment: Manifest) -> list[Manifest]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def rules_as_set(role: Manifest) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples granted by a Role or ClusterRole."""
    granted = set()
    for rule in role["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted


def dump(objects: Iterable[Manifest]) -> str:
    return yaml.safe_dump_all(list(objects))
