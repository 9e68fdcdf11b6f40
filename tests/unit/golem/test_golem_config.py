"""GolemConfig: validation, environment loading, and that the app key stays hidden."""

from __future__ import annotations

import pytest
from golem_fakes import APP_KEY, make_config
from pydantic import ValidationError

from golem_operator.golem import GolemConfig, GolemConfigError, GolemError


def test_defaults_and_url_normalisation() -> None:
    config = GolemConfig(app_key=APP_KEY, url="http://127.0.0.1:7465/")
    assert config.url == "http://127.0.0.1:7465"
    assert config.request_timeout == 10.0
    assert config.max_retries == 3
    assert config.backoff_base == 0.2
    assert config.app_key.get_secret_value() == APP_KEY


def test_key_is_hidden_from_repr_str_and_dumps() -> None:
    config = make_config()
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert APP_KEY not in text
    assert "**********" in repr(config)


def test_config_is_frozen() -> None:
    config = make_config()
    with pytest.raises(ValidationError):
        config.url = "http://127.0.0.1:1"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "127.0.0.1:7465"),
        ("url", "ftp://127.0.0.1"),
        ("url", "http://127.0.0.1:7465/?x=1"),
        ("request_timeout", 0),
        ("connect_timeout", -1),
        ("max_retries", -1),
        ("backoff_base", -0.1),
    ],
)
def test_invalid_settings_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        make_config(**{field: value})
    assert field in str(caught.value)


def test_rejected_key_is_not_echoed_by_validation_errors() -> None:
    bad_key = "half-of-a-secret other-half"
    with pytest.raises(ValidationError) as caught:
        make_config(app_key=bad_key)
    assert "half-of-a-secret" not in str(caught.value)


def test_from_env_reads_the_variables() -> None:
    config = GolemConfig.from_env(
        {
            "GOLEM_URL": "http://127.0.0.1:17465",
            "YAGNA_APPKEY": APP_KEY,
            "GOLEM_REQUEST_TIMEOUT": "3.5",
            "GOLEM_MAX_RETRIES": "0",
        }
    )
    assert config.url == "http://127.0.0.1:17465"
    assert config.app_key.get_secret_value() == APP_KEY
    assert config.request_timeout == 3.5
    assert config.max_retries == 0
    assert config.connect_timeout == 5.0


def test_from_env_defaults_the_url() -> None:
    assert GolemConfig.from_env({"YAGNA_APPKEY": APP_KEY}).url == "http://127.0.0.1:7465"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "YAGNA_APPKEY"),
        ({"YAGNA_APPKEY": "   "}, "YAGNA_APPKEY"),
        ({"YAGNA_APPKEY": f"{APP_KEY} extra"}, "YAGNA_APPKEY"),
        ({"YAGNA_APPKEY": APP_KEY, "GOLEM_URL": "not a url"}, "GOLEM_URL"),
        ({"YAGNA_APPKEY": APP_KEY, "GOLEM_REQUEST_TIMEOUT": "soon"}, "GOLEM_REQUEST_TIMEOUT"),
        ({"YAGNA_APPKEY": APP_KEY, "GOLEM_CONNECT_TIMEOUT": "0"}, "GOLEM_CONNECT_TIMEOUT"),
        ({"YAGNA_APPKEY": APP_KEY, "GOLEM_MAX_RETRIES": "2.5"}, "GOLEM_MAX_RETRIES"),
    ],
)
def test_from_env_names_the_bad_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(GolemConfigError) as caught:
        GolemConfig.from_env(environ)
    assert str(caught.value).startswith(variable)
    assert APP_KEY not in str(caught.value)
    assert isinstance(caught.value, GolemError) and isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None
