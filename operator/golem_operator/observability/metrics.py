"""Prometheus metrics of the operator: reconciles, instances per state, Golem API, GLM spent.

Handlers record facts here; `serve` exposes them on a port. Gauges of instances are set
from each service's status after every reconcile and dropped when the service goes away.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "golem_operator_reconciles", "Reconcile passes", ["namespace", "service"], registry=REGISTRY
)
RECONCILE_ERRORS = Counter(
    "golem_operator_reconcile_errors",
    "Reconcile passes that failed",
    ["namespace", "service", "reason"],
    registry=REGISTRY,
)
INSTANCES = Gauge(
    "golem_operator_instances",
    "Instances per state",
    ["namespace", "service", "state"],
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "golem_operator_instance_transitions",
    "Instance state transitions",
    ["namespace", "service", "reason"],
    registry=REGISTRY,
)
GOLEM_LATENCY = Histogram(
    "golem_operator_golem_api_request_duration_seconds",
    "Golem daemon REST call latency (long polls included)",
    ["method", "path", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
GOLEM_ERRORS = Counter(
    "golem_operator_golem_api_errors",
    "Golem daemon REST calls that failed",
    ["method", "path", "status"],
    registry=REGISTRY,
)
GLM_SPENT = Gauge(
    "golem_operator_glm_spent", "GLM accepted so far", ["namespace", "service"], registry=REGISTRY
)
STATUS_PATCHES = Counter(
    "golem_operator_status_patches",
    "Status patches sent",
    ["namespace", "service"],
    registry=REGISTRY,
)
PAYMENT_DOCUMENTS = Counter(
    "golem_operator_payment_documents",
    "Debit notes and invoices decided, by kind and outcome (accepted, rejected, and the same "
    "for documents of agreements no service holds: unowned-accepted, unowned-rejected)",
    ["kind", "outcome"],
    registry=REGISTRY,
)
PAYMENT_DOCUMENT_RETRIES = Counter(
    "golem_operator_payment_document_retries",
    "Attempts at handling a debit note or invoice that failed and will be retried",
    ["kind"],
    registry=REGISTRY,
)
TASK_RESTARTS = Counter(
    "golem_operator_background_task_restarts",
    "Background tasks of a daemon (payment polls, agreement events) that died and restarted",
    ["task"],
    registry=REGISTRY,
)

PROXY_CONNECTIONS = Counter(
    "golem_operator_proxy_connections",
    "Connections accepted on a spec.ports listener",
    ["namespace", "service", "port"],
    registry=REGISTRY,
)
PROXY_ACTIVE = Gauge(
    "golem_operator_proxy_active_connections",
    "Connections open on a spec.ports listener",
    ["namespace", "service", "port"],
    registry=REGISTRY,
)
PROXY_BYTES = Counter(
    "golem_operator_proxy_bytes",
    "Bytes forwarded by the proxy: in (client to instance) and out (instance to client)",
    ["namespace", "service", "port", "direction"],
    registry=REGISTRY,
)
PROXY_ERRORS = Counter(
    "golem_operator_proxy_errors",
    "Proxy failures by reason: a tunnel that could not be opened (tunnel-refused: nothing "
    "answered at the instance, network-unknown, daemon-unreachable, connect-timeout, "
    "golem-error), a connection closed with no instance to take it (no-backend), or one "
    "ended by idle-timeout, connection-reset or stream-error",
    ["namespace", "service", "port", "reason"],
    registry=REGISTRY,
)
PROXY_REASONS = (
    "tunnel-refused",
    "network-unknown",
    "daemon-unreachable",
    "connect-timeout",
    "golem-error",
    "no-backend",
    "idle-timeout",
    "connection-reset",
    "stream-error",
)


class _Queue(Protocol):
    @property
    def queued_requests(self) -> int: ...


#: Golem clients whose waiting requests the queue gauge sums (dropped with the client).
_QUEUES: weakref.WeakSet[_Queue] = weakref.WeakSet()
GOLEM_QUEUED = Gauge(
    "golem_operator_golem_api_queued_requests",
    "Golem daemon REST calls waiting for a free slot in the operator (the bounded concurrency)",
    registry=REGISTRY,
)
GOLEM_QUEUED.set_function(lambda: sum(q.queued_requests for q in list(_QUEUES)))


def watch_golem_queue(client: _Queue) -> None:
    _QUEUES.add(client)


STATES = ("Pending", "Starting", "Running", "Stopping", "Terminated")


def record_golem_call(method: str, path: str, status: int | None, seconds: float) -> None:
    code = str(status) if status is not None else "none"
    GOLEM_LATENCY.labels(method, path, code).observe(seconds)
    if status is None or status >= 400:
        GOLEM_ERRORS.labels(method, path, code).inc()


def record_instances(namespace: str, service: str, counts: dict[str, int], spent: float) -> None:
    for state in STATES:
        INSTANCES.labels(namespace, service, state).set(counts.get(state, 0))
    GLM_SPENT.labels(namespace, service).set(spent)


def forget_service(namespace: str, service: str) -> None:
    """Drop a deleted service's series so that scrapes do not show ghosts."""
    for state in STATES:
        with contextlib.suppress(KeyError):
            INSTANCES.remove(namespace, service, state)
    with contextlib.suppress(KeyError):
        GLM_SPENT.remove(namespace, service)


def forget_proxy_port(namespace: str, service: str, port: str) -> None:
    """Drop the series of a port no longer served."""
    for metric in (PROXY_CONNECTIONS, PROXY_ACTIVE):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, service, port)
    for direction in ("in", "out"):
        with contextlib.suppress(KeyError):
            PROXY_BYTES.remove(namespace, service, port, direction)
    for reason in PROXY_REASONS:
        with contextlib.suppress(KeyError):
            PROXY_ERRORS.remove(namespace, service, port, reason)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address, registry=REGISTRY)
