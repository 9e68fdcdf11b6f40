"""Builders shared by the core unit tests: specs, instance records, offers, a fixed clock.

Imported by the tests in this folder (pytest puts the folder on sys.path).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.api.status import Instance, InstanceState

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
IMAGE_HASH = "9a3b5d67b0b27746283cb5f287c13eab1beaa12d92a9f536b747c7ae"

#: Properties of a provider offer as the daemon publishes them (see yagna-offline.md).
OFFER_BASE: dict[str, Any] = {
    "golem.inf.mem.gib": 8.0,
    "golem.inf.storage.gib": 50.0,
    "golem.inf.cpu.cores": 4,
    "golem.inf.cpu.threads": 4,
    "golem.inf.cpu.architecture": "x86_64",
    "golem.runtime.name": "vm",
    "golem.runtime.version": "0.4.2",
    "golem.node.debug.subnet": "public",
    "golem.node.id.name": "provider-1",
    "golem.com.pricing.model": "linear",
    "golem.com.scheme": "payu",
    "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
    "golem.com.payment.platform.erc20-holesky-tglm.address": "0x" + "ab" * 20,
    "golem.activity.caps.transfer.protocol": ["http", "https", "gftp"],
    "golem.srv.caps.multi-activity": True,
}


def make_spec(**overrides: Any) -> GolemServiceSpec:
    """A valid spec; overrides are wire-format (camelCase) top-level fields, merged shallowly."""
    body: dict[str, Any] = {
        "payload": {"image": {"hash": IMAGE_HASH}},
        "budget": "10",
    }
    body.update(overrides)
    return GolemServiceSpec.model_validate(body)


def at(seconds: float) -> str:
    """RFC 3339 time `seconds` after T0."""
    return (T0 + timedelta(seconds=seconds)).isoformat()


def make_instance(name: str, state: InstanceState, **fields: Any) -> Instance:
    return Instance.model_validate({"name": name, "state": state.value, **fields})


def offer_properties(
    coeffs: list[Any], *, threads: int = 4, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An offer's properties with linear coeffs [cpu_sec, duration_sec, start]."""
    return {
        **OFFER_BASE,
        "golem.inf.cpu.threads": threads,
        "golem.com.pricing.model.linear.coeffs": coeffs,
        **(extra or {}),
    }
