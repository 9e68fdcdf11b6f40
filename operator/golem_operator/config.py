"""The operator's configuration, from prefixed environment variables.

Read once at startup by the runner. Errors name the offending variable. The app key is a
SecretStr: it never appears in reprs, logs or errors.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from golem_operator.golem.config import DEFAULT_MAX_REQUESTS


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class OperatorConfig:
    #: Default Golem daemon URL (services without golemRef use it).
    golem_url: str = "http://127.0.0.1:7465"
    #: Default app key; from GOLEM_APPKEY, or the file named by GOLEM_APPKEY_FILE.
    golem_app_key: SecretStr | None = field(default=None, repr=False)
    #: Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: Address the metrics and health endpoints listen on (0.0.0.0 in a pod; tests use loopback).
    bind_address: str = "0.0.0.0"
    metrics_port: int = 9090
    health_port: int = 8080
    log_format: str = "text"  # text or json
    log_level: str = "INFO"
    #: Minimum seconds between two status patches of one service.
    status_interval: float = 0.5
    #: Admin annotation honoured to drop the finalizer without settling on Golem.
    allow_force_delete: bool = True
    #: Seconds a deletion waits for the invoices of its terminated agreements before it
    #: releases the allocation (a later invoice is then rejected with the reason).
    invoice_wait: float = 300.0
    #: Seconds a debit note or invoice waits for a service to claim its agreement before it is
    #: judged without one (from the agreement on Golem; rejected when no allocation is left).
    unowned_document_wait: float = 600.0
    #: Golem image registry resolving payload.image tags and hashes (a service's
    #: payload.image.registry wins).
    image_registry: str = "https://registry.golem.network"
    #: Ordinary calls open on one Golem daemon at a time (the rest queue in the operator).
    daemon_max_requests: int = DEFAULT_MAX_REQUESTS
    #: Long polls open on one Golem daemon at a time; 0 means no bound.
    daemon_max_long_polls: int = 0
    #: Seconds between two writes of an instance's routine run-script result (same outcome
    #: as the last one written): a failure, a recovery or a state change is written at once.
    run_result_interval: float = 15.0
    #: The operator's own address: spec.ports listeners bind to it and the EndpointSlices
    #: of the services name it (the pod IP, from the downward API, in a cluster).
    pod_ip: str = "127.0.0.1"
    #: Seconds the proxy waits for one instance's TCP tunnel to open before trying another.
    proxy_connect_timeout: float = 10.0
    #: Seconds a proxied connection may carry no byte either way before it is closed (0: never).
    proxy_idle_timeout: float = 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        key: SecretStr | None = None
        if env.get("GOLEM_APPKEY"):
            key = SecretStr(env["GOLEM_APPKEY"].strip())
        elif env.get("GOLEM_APPKEY_FILE"):
            path = Path(env["GOLEM_APPKEY_FILE"])
            try:
                key = SecretStr(path.read_text().strip())
            except OSError as error:
                raise ConfigError(
                    f"GOLEM_APPKEY_FILE: cannot read {path}: {error.strerror}"
                ) from None

        def integer(name: str, default: int) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
            if not 0 <= value <= 65535:
                raise ConfigError(f"{name}: expected 0..65535, got {value}")
            return value

        log_format = env.get("GOLEM_OPERATOR_LOG_FORMAT", "text")
        if log_format not in ("text", "json"):
            raise ConfigError(
                f"GOLEM_OPERATOR_LOG_FORMAT: expected text or json, got {log_format!r}"
            )
        namespaces = tuple(
            n.strip() for n in env.get("GOLEM_OPERATOR_NAMESPACES", "").split(",") if n.strip()
        )

        def seconds(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected seconds, got {raw!r}") from None
            if not 0 <= value < 10**7:
                raise ConfigError(f"{name}: expected 0 or more seconds, got {raw!r}")
            return value

        interval = seconds("GOLEM_OPERATOR_STATUS_INTERVAL", 0.5)
        registry = env.get("GOLEM_OPERATOR_IMAGE_REGISTRY", "").strip() or cls.image_registry
        if not re.match(r"^https?://[^\s/?#]+(/\S*)?$", registry):
            raise ConfigError(
                f"GOLEM_OPERATOR_IMAGE_REGISTRY: expected an http(s) URL, got {registry!r}"
            )
        pod_ip = env.get("GOLEM_OPERATOR_POD_IP", "").strip() or cls.pod_ip
        try:
            ipaddress.ip_address(pod_ip)
        except ValueError:
            raise ConfigError(
                f"GOLEM_OPERATOR_POD_IP: expected an IP address, got {pod_ip!r}"
            ) from None
        connect_timeout = seconds(
            "GOLEM_OPERATOR_PROXY_CONNECT_TIMEOUT_SECONDS", cls.proxy_connect_timeout
        )
        if connect_timeout <= 0:
            raise ConfigError("GOLEM_OPERATOR_PROXY_CONNECT_TIMEOUT_SECONDS: expected more than 0")
        max_requests = integer("GOLEM_OPERATOR_DAEMON_MAX_REQUESTS", cls.daemon_max_requests)
        if max_requests < 1:
            raise ConfigError("GOLEM_OPERATOR_DAEMON_MAX_REQUESTS: expected at least 1, got 0")
        return cls(
            golem_url=env.get("GOLEM_URL", cls.golem_url),
            golem_app_key=key,
            namespaces=namespaces,
            bind_address=env.get("GOLEM_OPERATOR_BIND_ADDRESS", "0.0.0.0"),
            metrics_port=integer("GOLEM_OPERATOR_METRICS_PORT", 9090),
            health_port=integer("GOLEM_OPERATOR_HEALTH_PORT", 8080),
            log_format=log_format,
            log_level=env.get("GOLEM_OPERATOR_LOG_LEVEL", "INFO").upper(),
            status_interval=interval,
            invoice_wait=seconds("GOLEM_OPERATOR_INVOICE_WAIT_SECONDS", cls.invoice_wait),
            unowned_document_wait=seconds(
                "GOLEM_OPERATOR_UNOWNED_DOCUMENT_WAIT_SECONDS", cls.unowned_document_wait
            ),
            image_registry=registry.rstrip("/"),
            daemon_max_requests=max_requests,
            daemon_max_long_polls=integer(
                "GOLEM_OPERATOR_DAEMON_MAX_LONG_POLLS", cls.daemon_max_long_polls
            ),
            run_result_interval=seconds(
                "GOLEM_OPERATOR_RUN_RESULT_INTERVAL", cls.run_result_interval
            ),
            pod_ip=pod_ip,
            proxy_connect_timeout=connect_timeout,
            proxy_idle_timeout=seconds(
                "GOLEM_OPERATOR_PROXY_IDLE_TIMEOUT_SECONDS", cls.proxy_idle_timeout
            ),
        )
