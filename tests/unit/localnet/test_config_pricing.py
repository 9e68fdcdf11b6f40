"""Local network configuration validation and the providers' money arithmetic."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from golem_operator.localnet.config import (
    ConfigError,
    Prices,
    expand_providers,
    load_config,
    parse_config,
)
from golem_operator.localnet.pricing import activity_cost, format_amount, parse_amount

ROOT = Path(__file__).resolve().parents[3]


def test_example_config_loads_and_expands() -> None:
    config = load_config(ROOT / "examples" / "localnet" / "providers.yaml")
    names = [p.name for p in expand_providers(config)]
    assert names[:3] == ["provider-1", "provider-2", "provider-3"]
    assert config.images[0].path == (ROOT / "examples" / "images" / "simple-service").resolve()
    flaky = next(p for p in expand_providers(config) if p.name == "cheap-but-flaky")
    assert flaky.faults.fail_start is True
    assert flaky.subnet_tag == config.subnet_tag  # network default filled in


def test_coefficients_are_in_yagna_order() -> None:
    prices = Prices(start=Decimal("0.5"), per_cpu_hour=Decimal("3.6"), per_env_hour=Decimal("7.2"))
    assert prices.coeffs() == [0.001, 0.002, 0.5]  # [cpu_sec, duration_sec, start]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"providers": [{"count": 2, "prices": {"start": "-1"}}]}, "providers[0].prices.start"),
        (
            {"providers": [{"name": "a", "resources": {"mem_gib": 0}}]},
            "providers[0].resources.mem_gib",
        ),
        (
            {"providers": [{"name": "a", "faults": {"latency_seconds": -1}}]},
            "providers[0].faults.latency_seconds",
        ),
        ({"providers": [{"name": "a", "bogus": 1}]}, "providers[0].bogus"),
        ({"providers": [{"name": "a", "count": 2}]}, "providers[0]"),
        ({"limits": {"output_cap_bytes": 1}}, "limits.output_cap_bytes"),
    ],
)
def test_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert str(raised.value).startswith(field)


def test_duplicate_names_and_bad_image_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate provider name"):
        parse_config({"providers": [{"name": "p-1"}, {"count": 1, "name_prefix": "p"}]})
    with pytest.raises(ConfigError, match=r"images\[0\].path"):
        parse_config({"images": [{"tag": "x", "path": str(tmp_path / "missing")}]})
    (tmp_path / "usr").mkdir()
    with pytest.raises(ConfigError, match="may not contain"):
        parse_config({"images": [{"tag": "x", "path": str(tmp_path)}]})


def test_activity_cost_is_linear() -> None:
    prices = Prices(start=Decimal("0.1"), per_cpu_hour=Decimal("3.6"), per_env_hour=Decimal("1.8"))
    cost = activity_cost(prices, cpu_seconds=100, duration_seconds=200)
    assert cost == Decimal("0.1") + Decimal("0.1") + Decimal("0.1")


def test_amount_strings() -> None:
    assert format_amount(Decimal("1.500000")) == "1.5"
    assert format_amount(Decimal("0")) == "0"
    assert format_amount(Decimal("1e-18")) == "0.000000000000000001"
    assert parse_amount("0.25") == Decimal("0.25")
    for bad in ("-1", "abc", "NaN", None):
        with pytest.raises(ValueError):
            parse_amount(bad)
