"""Generates the CustomResourceDefinitions (GolemService, GolemServiceInstance) from the models.

Called by ``golem-operator crd`` (which writes crds/) and by the test that fails when the
committed YAML drifts from the models. Pydantic's JSON schema is turned into a Kubernetes
structural schema: references inlined, nullables collapsed, titles dropped, and the
``x-kubernetes-*`` extras kept.
"""

from __future__ import annotations

from typing import Any

import yaml

from golem_operator import constants
from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import (
    GolemServiceInstanceSpec,
    GolemServiceStatus,
    InstanceStatus,
)

_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "format",
    "required",
    "nullable",
}

#: Printer columns: Desired, Ready, Phase, Age by default; prices and spend with -o wide.
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Up-to-date",
        "type": "integer",
        "jsonPath": ".status.updatedReplicas",
        "priority": 1,
        "description": "Instances of the update revision",
    },
    {
        "name": "Available",
        "type": "integer",
        "jsonPath": ".status.availableReplicas",
        "priority": 1,
        "description": "Instances Running for at least minReadySeconds",
    },
    {
        "name": "Revision",
        "type": "string",
        "jsonPath": ".status.updateRevision",
        "priority": 1,
        "description": "The spec's revision",
    },
    {
        "name": "Spent",
        "type": "string",
        "jsonPath": ".status.spent",
        "priority": 1,
        "description": "GLM accepted so far",
    },
    {
        "name": "Budget",
        "type": "string",
        "jsonPath": ".spec.budget",
        "priority": 1,
        "description": "Most GLM this service may spend",
    },
    {
        "name": "Max-CPU/h",
        "type": "string",
        "jsonPath": ".spec.market.maxCpuPerHour",
        "priority": 1,
    },
    {
        "name": "Max-Env/h",
        "type": "string",
        "jsonPath": ".spec.market.maxEnvPerHour",
        "priority": 1,
    },
    {
        "name": "Max-Start",
        "type": "string",
        "jsonPath": ".spec.market.maxStartPrice",
        "priority": 1,
    },
]


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn one pydantic JSON-schema node into a Kubernetes structural-schema node."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        if "description" in node:
            merged["description"] = node["description"]
        return _structural(merged, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        merged = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", ...) is None:
            del merged["default"]
        return _structural(merged, defs)

    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEEP or k.startswith("x-k")}
    if out.get("default", ...) is None:
        del out["default"]
    if node.get("type") == "object" or "properties" in node:
        out["type"] = "object"
        if "properties" in node:
            out["properties"] = {
                name: _structural(prop, defs) for name, prop in node["properties"].items()
            }
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = _structural(extra, defs)
    if node.get("type") == "array":
        out["items"] = _structural(node["items"], defs)
    return out


#: Printer columns of instances, in the manner of `kubectl get pods`.
INSTANCE_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Provider", "type": "string", "jsonPath": ".status.provider.name"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Host", "type": "string", "jsonPath": ".status.hostname", "priority": 1},
    {"name": "VPN-Address", "type": "string", "jsonPath": ".status.vpnAddress", "priority": 1},
    {"name": "Service", "type": "string", "jsonPath": ".spec.service", "priority": 1},
    {"name": "Revision", "type": "string", "jsonPath": ".spec.revision", "priority": 1},
    {"name": "Agreement", "type": "string", "jsonPath": ".status.agreementId", "priority": 1},
    {"name": "Activity", "type": "string", "jsonPath": ".status.activityId", "priority": 1},
    {"name": "Spent", "type": "string", "jsonPath": ".status.spent", "priority": 1},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
]


def _schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return dict(_structural(raw, defs))


def status_schema() -> dict[str, Any]:
    schema = _schema(GolemServiceStatus)
    props = schema["properties"]
    props["conditions"]["x-kubernetes-list-type"] = "map"
    props["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    props["instances"]["x-kubernetes-list-type"] = "map"
    props["instances"]["x-kubernetes-list-map-keys"] = ["name"]
    return schema


def crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition as a plain dict."""
    spec_schema = _schema(GolemServiceSpec)
    spec_schema["description"] = (
        "Desired state: the payload to rent on Golem, the lifecycle scripts "
        "(start once, run repeatedly, stop once), the number of replicas, market and budget."
    )
    status = status_schema()
    status["description"] = (
        "Observed state, and the operator's record of every agreement and activity it holds."
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": constants.CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "golem-operator"},
        },
        "spec": {
            "group": constants.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": constants.KIND,
                "listKind": f"{constants.KIND}List",
                "plural": constants.PLURAL,
                "singular": constants.SINGULAR,
                "shortNames": list(constants.SHORT_NAMES),
                "categories": list(constants.CATEGORIES),
            },
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A long-lived service on the Golem Network: the operator "
                                "rents providers, runs the lifecycle scripts and keeps "
                                "spec.replicas instances Running."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "API version of this object.",
                                },
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def instance_crd() -> dict[str, Any]:
    """The GolemServiceInstance CustomResourceDefinition: one object per instance."""
    spec_schema = _schema(GolemServiceInstanceSpec)
    spec_schema["description"] = (
        "What the instance is (its service and revision); set by the operator at creation."
    )
    spec_schema["x-kubernetes-validations"] = [
        {"rule": "self == oldSelf", "message": "an instance's spec is immutable"}
    ]
    status = _schema(InstanceStatus)
    status["description"] = (
        "Observed state of the instance, and the operator's record of the agreement and "
        "activity it holds."
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": constants.INSTANCE_CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "golem-operator"},
        },
        "spec": {
            "group": constants.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": constants.INSTANCE_KIND,
                "listKind": f"{constants.INSTANCE_KIND}List",
                "plural": constants.INSTANCE_PLURAL,
                "singular": constants.INSTANCE_SINGULAR,
                "shortNames": list(constants.INSTANCE_SHORT_NAMES),
                "categories": list(constants.CATEGORIES),
            },
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": INSTANCE_PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "One instance of a GolemService: a provider rented on Golem, "
                                "driven Pending -> Starting -> Running -> Stopping -> "
                                "Terminated. Created and owned by its GolemService; deleting "
                                "it stops the instance cleanly and the service replaces it."
                            ),
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "API version of this object.",
                                },
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


_HEADER = "# Generated from operator/golem_operator/api by `golem-operator crd`. Do not edit.\n"

#: The CRD files of crds/, by the --kind that `golem-operator crd` takes.
CRD_FILES = {"service": "golemservices.yaml", "instance": "golemserviceinstances.yaml"}


def crd_yaml(kind: str = "service") -> str:
    """One CRD as committed in crds/ (kind: service or instance), or both (all)."""
    if kind == "all":
        return crd_yaml("service") + "---\n" + crd_yaml("instance")
    document = crd() if kind == "service" else instance_crd()
    return _HEADER + yaml.safe_dump(document, sort_keys=False, width=100)
