"""Log lines carry namespace/name (text and JSON); configuration errors name the variable."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from golem_operator.config import ConfigError, OperatorConfig
from golem_operator.observability import logs


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """logs.setup replaces the root handlers: give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def captured() -> io.StringIO:
    return io.StringIO()


def _emit(fmt: str, stream: io.StringIO, **extra: object) -> str:
    logs.setup(fmt, "INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("golem_operator.test").info("hello %s", "world", extra=extra)
    return stream.getvalue()


def test_service_logger_adds_namespace_and_name(captured: io.StringIO) -> None:
    logs.setup("text", "INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(captured)
    logs.for_service("golem_operator.x", "team-a", "web").info("started")
    assert "[team-a/web]" in captured.getvalue()


def test_kopf_object_records_show_their_object(captured: io.StringIO) -> None:
    line = _emit("text", captured, k8s_ref={"namespace": "ns1", "name": "svc"})
    assert "[ns1/svc]" in line and "hello world" in line


def test_json_lines_are_json_with_the_resource(captured: io.StringIO) -> None:
    line = _emit("json", captured, resource="ns2/svc2")
    entry = json.loads(line.strip().splitlines()[-1])
    assert entry["resource"] == "ns2/svc2"
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GOLEM_OPERATOR_METRICS_PORT": "abc"}, "GOLEM_OPERATOR_METRICS_PORT"),
        ({"GOLEM_OPERATOR_HEALTH_PORT": "70000"}, "GOLEM_OPERATOR_HEALTH_PORT"),
        ({"GOLEM_OPERATOR_LOG_FORMAT": "xml"}, "GOLEM_OPERATOR_LOG_FORMAT"),
        ({"GOLEM_OPERATOR_STATUS_INTERVAL": "soon"}, "GOLEM_OPERATOR_STATUS_INTERVAL"),
        ({"GOLEM_APPKEY_FILE": "/nonexistent/key"}, "GOLEM_APPKEY_FILE"),
        ({"GOLEM_OPERATOR_IMAGE_REGISTRY": "registry.golem.network"}, "IMAGE_REGISTRY"),
        ({"GOLEM_OPERATOR_DAEMON_MAX_REQUESTS": "0"}, "GOLEM_OPERATOR_DAEMON_MAX_REQUESTS"),
        ({"GOLEM_OPERATOR_DAEMON_MAX_LONG_POLLS": "-1"}, "GOLEM_OPERATOR_DAEMON_MAX_LONG_POLLS"),
        ({"GOLEM_OPERATOR_POD_IP": "my-pod"}, "GOLEM_OPERATOR_POD_IP"),
        (
            {"GOLEM_OPERATOR_PROXY_CONNECT_TIMEOUT_SECONDS": "0"},
            "GOLEM_OPERATOR_PROXY_CONNECT_TIMEOUT_SECONDS",
        ),
        (
            {"GOLEM_OPERATOR_PROXY_IDLE_TIMEOUT_SECONDS": "never"},
            "GOLEM_OPERATOR_PROXY_IDLE_TIMEOUT_SECONDS",
        ),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        OperatorConfig.from_env(env)


def test_app_key_is_never_shown() -> None:
    config = OperatorConfig.from_env(
        {"GOLEM_APPKEY": "very-secret-key", "GOLEM_OPERATOR_NAMESPACES": "a, b"}
    )
    assert config.golem_app_key is not None
    assert config.golem_app_key.get_secret_value() == "very-secret-key"
    assert "very-secret-key" not in repr(config) and "very-secret-key" not in str(config)
    assert config.namespaces == ("a", "b")


def test_the_image_registry_defaults_to_the_public_one() -> None:
    assert OperatorConfig.from_env({}).image_registry == "https://registry.golem.network"
    local = OperatorConfig.from_env({"GOLEM_OPERATOR_IMAGE_REGISTRY": "http://127.0.0.1:7465/"})
    assert local.image_registry == "http://127.0.0.1:7465"


def test_the_daemon_request_bounds() -> None:
    default = OperatorConfig.from_env({})
    assert (default.daemon_max_requests, default.daemon_max_long_polls) == (256, 0)
    tuned = OperatorConfig.from_env(
        {"GOLEM_OPERATOR_DAEMON_MAX_REQUESTS": "8", "GOLEM_OPERATOR_DAEMON_MAX_LONG_POLLS": "100"}
    )
    assert (tuned.daemon_max_requests, tuned.daemon_max_long_polls) == (8, 100)


def test_the_proxy_settings() -> None:
    default = OperatorConfig.from_env({})
    assert (default.pod_ip, default.proxy_connect_timeout, default.proxy_idle_timeout) == (
        "127.0.0.1",
        10.0,
        3600.0,
    )
    in_a_pod = OperatorConfig.from_env(
        {
            "GOLEM_OPERATOR_POD_IP": "fd00::17",
            "GOLEM_OPERATOR_PROXY_CONNECT_TIMEOUT_SECONDS": "2.5",
            "GOLEM_OPERATOR_PROXY_IDLE_TIMEOUT_SECONDS": "0",
        }
    )
    assert (in_a_pod.pod_ip, in_a_pod.proxy_connect_timeout) == ("fd00::17", 2.5)
    assert in_a_pod.proxy_idle_timeout == 0  # no idle timeout
