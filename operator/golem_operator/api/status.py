"""Status of a GolemService (a bounded summary) and of its GolemServiceInstances.

Each instance is its own GolemServiceInstance object, as each Pod of a ReplicaSet is: its
status is the operator's memory of the agreement and activity that instance holds. Written
only by the status writers (handlers) from transactions computed in ``core``. A restarted
operator re-adopts the agreements and activities recorded in the instance objects, so every
Golem object the operator creates is recorded there before the operator relies on it.

Sizes are bounded (etcd refuses objects above about 1.5 MiB): the bounds are in the schema
(maxLength, maxItems) and ``core`` cuts values to them before they are written.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Bounds of an instance's status (enforced by core before writing, declared in the schema).
MESSAGE_MAX = 1024
OUTPUT_MAX = 2048
DOWNLOADS_MAX_ITEMS = 16
DOWNLOAD_CONTENT_MAX = 65536
#: All downloads of one instance together (characters of content).
DOWNLOADS_TOTAL_MAX = 262144
#: Providers remembered as avoided by one service.
AVOIDED_MAX = 256


def _max_length(n: int) -> dict[str, Any]:
    return {"maxLength": n}


class _Status(BaseModel):
    """Status models tolerate fields written by newer operators (rolling upgrades)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class InstanceState(StrEnum):
    """The service model's states of one instance."""

    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    TERMINATED = "Terminated"


class Phase(StrEnum):
    """The whole service's phase, for `kubectl get` (derived from the instances)."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    STOPPED = "Stopped"
    DELETING = "Deleting"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Condition(_Status):
    """A KEP-1623 condition."""

    type: str = Field(description="Ready, Progressing or Degraded.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    observed_generation: int = Field(
        0, alias="observedGeneration", description="Generation this condition was computed for."
    )
    last_transition_time: str = Field(
        alias="lastTransitionTime", description="When the status last changed (RFC 3339)."
    )


class Provider(_Status):
    """The provider an instance runs on."""

    id: str = Field(description="Node id (0x…).")
    name: str = Field("", description="Node name the provider advertises.")


class RunResult(_Status):
    """The latest result of a script (tails capped)."""

    time: str = Field(description="When it finished (RFC 3339).")
    success: bool = Field(description="Whether every command succeeded.")
    stdout: str = Field(
        "", description="Tail of standard output.", json_schema_extra=_max_length(OUTPUT_MAX)
    )
    stderr: str = Field(
        "", description="Tail of standard error.", json_schema_extra=_max_length(OUTPUT_MAX)
    )
    message: str = Field(
        "",
        description="Error message of the failing command, if any.",
        json_schema_extra=_max_length(MESSAGE_MAX),
    )


class Download(_Status):
    """Head of a file fetched by a download command."""

    path: str = Field(description="Path inside the VM.")
    content: str = Field(
        "",
        description="The first maxBytes bytes (UTF-8, replaced if binary); all downloads of "
        f"an instance together keep at most {DOWNLOADS_TOTAL_MAX} characters.",
        json_schema_extra=_max_length(DOWNLOAD_CONTENT_MAX),
    )
    truncated: bool = Field(False, description="Whether the file was longer than maxBytes.")


class Price(_Status):
    """The agreed linear prices (GLM), copied from the provider's offer."""

    start: str = Field("0", description="Start price.")
    cpu_per_hour: str = Field("0", alias="cpuPerHour", description="Price per CPU-hour.")
    env_per_hour: str = Field("0", alias="envPerHour", description="Price per hour of life.")
    cpu_threads: int = Field(1, alias="cpuThreads", description="CPU threads of the provider.")


class InstanceStatus(_Status):
    """Observed state of one instance: its lifecycle state and the Golem objects it holds."""

    state: InstanceState = Field(description="Pending, Starting, Running, Stopping, Terminated.")
    provider: Provider | None = Field(None, description="The rented provider.")
    agreement_id: str | None = Field(None, alias="agreementId", description="Golem agreement.")
    activity_id: str | None = Field(None, alias="activityId", description="Golem activity.")
    started_at: str | None = Field(
        None, alias="startedAt", description="When it became Running (RFC 3339)."
    )
    created_at: str | None = Field(
        None, alias="createdAt", description="When the instance was created (RFC 3339)."
    )
    agreement_expires_at: str | None = Field(
        None, alias="agreementExpiresAt", description="When its agreement ends (RFC 3339)."
    )
    last_transition_time: str | None = Field(
        None, alias="lastTransitionTime", description="When the state last changed (RFC 3339)."
    )
    approved_at: str | None = Field(
        None, alias="approvedAt", description="When the agreement was approved (RFC 3339)."
    )
    terminated_at: str | None = Field(
        None,
        alias="terminatedAt",
        description="When it reached Terminated (RFC 3339): its invoice is judged for the "
        "agreement's life from approvedAt to this time.",
    )
    price: Price | None = Field(None, description="The agreed prices.")
    replaces: str | None = Field(
        None, description="The instance this one supersedes (agreement renewal)."
    )
    restarts: int = Field(0, description="How many times this replica was replaced.")
    message: str = Field(
        "",
        description="Why it is in this state (errors included).",
        json_schema_extra=_max_length(MESSAGE_MAX),
    )
    reason: str = Field("", description="CamelCase reason of the last transition.")
    stopping_reason: str = Field(
        "", alias="stoppingReason", description="Why it was asked to stop (ScaleDown, Deleted…)."
    )
    consecutive_failures: int = Field(
        0, alias="consecutiveFailures", description="Failed runs in a row."
    )
    last_run: RunResult | None = Field(
        None, alias="lastRun", description="Latest run-script result."
    )
    downloads: list[Download] = Field(
        default_factory=list,
        description="Files fetched by download commands.",
        json_schema_extra={"maxItems": DOWNLOADS_MAX_ITEMS},
    )
    spent: str = Field("0", description="GLM accepted for this instance's agreement.")
    final: bool = Field(
        False,
        description="Failed and not to be replaced (respawnUnstartedInstances false or "
        "restartPolicy): it keeps counting towards replicas until a scale-down or spec change.",
    )
    settled: bool = Field(
        False,
        description="The agreement is terminated and its invoice decided: accepted, or rejected "
        "with the reason (a Warning Event); or it never had one. Never set for a missing invoice.",
    )
    ordinal: int | None = Field(
        None,
        description="The instance's place in the service's VPN (spec.network): the lowest "
        "number no other live instance holds when it starts, so a replacement takes over the "
        "name and address of the instance it replaces.",
    )
    hostname: str | None = Field(None, description="Its host name in the VPN: <service>-<ordinal>.")
    vpn_address: str | None = Field(
        None,
        alias="vpnAddress",
        description="Its IPv4 address in the VPN (gateway + 1 + ordinal), recorded before its "
        "provider node is added at it.",
    )
    network_id: str | None = Field(
        None, alias="networkId", description="The Golem network (net API id) it joined."
    )


#: Instance fields kept in the instance object's metadata and spec, not its status.
IDENTITY_FIELDS = frozenset({"name", "revision"})


class Instance(InstanceStatus):
    """One instance as the operator holds it: its status, with its name and revision."""

    name: str = Field(description="Instance name (the GolemServiceInstance's name).")
    revision: str = Field("", description="Revision hash of what the instance runs.")

    def status_body(self) -> dict[str, Any]:
        """The instance object's status, as written."""
        return self.model_dump(
            by_alias=True, mode="json", exclude_none=True, exclude=set(IDENTITY_FIELDS)
        )


class GolemServiceInstanceSpec(_Status):
    """What an instance is: written once by the operator when it creates the instance."""

    service: str = Field(description="Name of the GolemService this instance belongs to.")
    revision: str = Field(
        "", description="Hash of what the instance runs (payload, lifecycle and market)."
    )


class InstanceCounts(_Status):
    """How many instance objects are in each state."""

    pending: int = Field(0, description="Pending: looking for a provider.")
    starting: int = Field(0, description="Starting: agreement signed, start script running.")
    running: int = Field(0, description="Running.")
    stopping: int = Field(0, description="Stopping: stop script running, agreement ending.")
    terminated: int = Field(0, description="Terminated (kept until settled, then pruned).")


#: Revisions status.revisions can hold (spec.revisionHistoryLimit at most 100, plus the
#: current and the update revision).
REVISIONS_MAX = 102


class RevisionRecord(_Status):
    """A revision the service has run: the hash of payload, lifecycle and market, and the
    generation whose spec it stands for."""

    revision: str = Field(description="Revision hash (the label services.golem.network/revision).")
    generation: int = Field(
        0, description="metadata.generation of the spec that last made this revision the target."
    )
    applied_at: str = Field(
        alias="appliedAt", description="When it last became the update revision (RFC 3339)."
    )
    image: str = Field(
        "",
        description="The payload image it runs (tag, or hash), for telling revisions apart.",
        json_schema_extra=_max_length(512),
    )


class Progress(_Status):
    """What the rollout had achieved when it last moved (for progressDeadlineSeconds)."""

    mark: str = Field("", description="Revision and counts at the last progress.")
    time: str = Field(description="When the rollout last made progress (RFC 3339).")


class ImageStatus(_Status):
    """The image every instance deploys: spec.payload.image resolved to a hash and a URL."""

    hash: str = Field(description="SHA3-224 hash of the image package (hex).")
    url: str = Field(description="Where providers download the image package from.")
    resolved_at: str = Field(alias="resolvedAt", description="When it was resolved (RFC 3339).")
    source: dict[str, str] = Field(
        default_factory=dict,
        description="The spec.payload.image it was resolved from (resolved again only when "
        "that changes, so replacements and renewals run the same bits).",
    )


class NetworkStatus(_Status):
    """A Golem VPN the operator created for the service (net API)."""

    id: str = Field(description="The network's id on the Golem daemon.")
    cidr: str = Field(description="Its IPv4 network (spec.network.cidr it was created for).")


#: Networks a service can be retiring at once (each cidr change while instances run adds one).
RETIRED_NETWORKS_MAX = 16


class ProxyPort(_Status):
    """One of spec.ports as the operator serves it."""

    name: str = Field(description="The port's name (spec.ports[].name).")
    port: int = Field(description="The port inside the instances (and of the Service).")
    listener_port: int = Field(
        alias="listenerPort",
        description="The operator's TCP port that forwards connections to this port of a "
        "Running instance (the EndpointSlice names it).",
    )


class ProxyStatus(_Status):
    """Where spec.ports are served: the Kubernetes Service and the operator's listeners."""

    service_name: str = Field(
        alias="serviceName", description="The Kubernetes Service (same namespace)."
    )
    address: str = Field(
        description="The address the operator's listeners are bound to (its pod IP; "
        "127.0.0.1 outside a cluster)."
    )
    ports: list[ProxyPort] = Field(
        default_factory=list,
        description="Each served port and its listener.",
        json_schema_extra={"maxItems": 32},
    )
    backends: int = Field(
        0,
        description="Instances connections go to now: Running, with a VPN address, not "
        "asked to stop.",
    )


class GolemServiceStatus(_Status):
    """Observed state of a GolemService."""

    observed_generation: int = Field(
        0, alias="observedGeneration", description="The spec generation last acted upon."
    )
    phase: Phase = Field(Phase.PENDING, description="Summary for kubectl get.")
    replicas: int = Field(
        0,
        description="Instances that exist and are not stopping (during a rollout or a renewal "
        "up to maxSurge above spec.replicas).",
    )
    ready_replicas: int = Field(0, alias="readyReplicas", description="Instances Running.")
    available_replicas: int = Field(
        0,
        alias="availableReplicas",
        description="Instances Running for at least spec.minReadySeconds.",
    )
    updated_replicas: int = Field(
        0,
        alias="updatedReplicas",
        description="Instances of the update revision that are not stopping.",
    )
    current_revision: str = Field(
        "",
        alias="currentRevision",
        description="The revision the service last ran in full (every instance on it).",
    )
    update_revision: str = Field(
        "", alias="updateRevision", description="The revision of the spec as it is now."
    )
    revisions: list[RevisionRecord] = Field(
        default_factory=list,
        description="Revision history, newest last: the update revision, the current one and "
        "at most spec.revisionHistoryLimit older ones.",
        json_schema_extra={"maxItems": REVISIONS_MAX},
    )
    last_progress: Progress | None = Field(
        None, alias="lastProgress", description="When the rollout last made progress."
    )
    instance_counts: InstanceCounts = Field(
        default_factory=InstanceCounts,
        alias="instanceCounts",
        description="Instance objects by state (kubectl get gsi -l <selector>).",
    )
    selector: str = Field(
        "",
        description="Label selector of the instance objects (scale subresource, "
        "kubectl get gsi -l).",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing and Degraded."
    )
    instances: list[Instance] = Field(
        default_factory=list,
        description="Deprecated: instances recorded here by operator versions before "
        "GolemServiceInstance. Adopted into instance objects, then cleared, on first sight.",
    )
    spent: str = Field("0", description="GLM accepted so far (debit notes and invoices).")
    allocation_id: str | None = Field(
        None, alias="allocationId", description="The payment allocation for the budget."
    )
    allocation_pending: str | None = Field(
        None,
        alias="allocationPending",
        description="An allocation being created: the expiry (RFC 3339, milliseconds) it "
        "carries as its mark, so that one created just before a crash is found and adopted.",
    )
    allocation_budget: str | None = Field(
        None,
        alias="allocationBudget",
        description="The spec.budget (GLM) the allocation was last sized for.",
    )
    demand_id: str | None = Field(
        None, alias="demandId", description="The current market demand subscription."
    )
    image: ImageStatus | None = Field(
        None, description="The resolved image (hash and URL) of the current demand."
    )
    avoided_providers: dict[str, str] = Field(
        default_factory=dict,
        alias="avoidedProviders",
        description="Providers not to use again until the given time (RFC 3339), by node id "
        f"(at most {AVOIDED_MAX}, the latest kept).",
        json_schema_extra={"maxProperties": AVOIDED_MAX},
    )
    instance_counter: int = Field(
        0, alias="instanceCounter", description="Sequence for instance names."
    )
    network: NetworkStatus | None = Field(
        None,
        description="The VPN of spec.network, recorded before any instance joins it (a "
        "restarted operator re-adopts it); deleted with the service or when spec.network goes.",
    )
    retired_networks: list[NetworkStatus] = Field(
        default_factory=list,
        alias="retiredNetworks",
        description="VPNs of an earlier spec.network that instances still use: each is "
        "deleted once no live instance is in it.",
        json_schema_extra={"maxItems": RETIRED_NETWORKS_MAX},
    )
    proxy: ProxyStatus | None = Field(
        None,
        description="How spec.ports are served: the Kubernetes Service and the operator's "
        "listener per port (absent without spec.ports).",
    )
