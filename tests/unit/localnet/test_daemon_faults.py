"""Daemon faults of the local network: matching by path glob, method, count and probability."""

from __future__ import annotations

import random

import pytest

from golem_operator.localnet.config import ConfigError, DaemonFault, parse_config
from golem_operator.localnet.faults import DaemonFaults

NOTE = "/payment-api/v1/debitNotes/6f1c"


def test_a_fault_matches_its_path_and_method_up_to_its_count() -> None:
    faults = DaemonFaults([DaemonFault(path="/payment-api/v1/debitNotes/*", method="GET", count=2)])
    assert faults.match("POST", NOTE + "/accept") is None
    assert faults.match("GET", "/payment-api/v1/invoices/1") is None
    assert faults.match("GET", NOTE) is not None
    assert faults.match("GET", NOTE) is not None
    assert faults.match("GET", NOTE) is None
    assert faults.to_json()[0]["failures"] == 2


def test_a_probability_fails_about_that_share() -> None:
    faults = DaemonFaults(
        [DaemonFault(path="/payment-api/*", probability=0.3)], rng=random.Random(7)
    )
    fired = sum(faults.match("GET", NOTE) is not None for _ in range(2000))
    assert 500 < fired < 700


def test_daemon_faults_are_read_from_the_yaml_and_validated() -> None:
    config = parse_config(
        {"daemon_faults": [{"path": "/payment-api/v1/invoices/*", "status": 500, "count": 1}]}
    )
    assert config.daemon_faults[0].status == 500
    with pytest.raises(ConfigError, match=r"daemon_faults\[0\]\.status"):
        parse_config({"daemon_faults": [{"path": "/x", "status": 404}]})
    with pytest.raises(ConfigError, match=r"providers\[0\]\.faults\.invoice_delay_seconds"):
        parse_config({"providers": [{"name": "p", "faults": {"invoice_delay_seconds": 0}}]})
