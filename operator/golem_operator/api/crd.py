"""Generates the GolemService CustomResourceDefinition from the pydantic models.

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
from golem_operator.api.status import GolemServiceStatus

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


def _schema(model: type[GolemServiceSpec] | type[GolemServiceStatus]) -> dict[str, Any]:
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


def crd_yaml() -> str:
    header = "# Generated from operator/golem_operator/api by `golem-operator crd`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
