"""The gauge of Golem calls waiting for a slot: the sum over the operator's live clients."""

from __future__ import annotations

import gc

from golem_operator.observability import metrics

GAUGE = "golem_operator_golem_api_queued_requests"


class Client:
    def __init__(self, queued: int) -> None:
        self.queued_requests = queued


def test_the_gauge_sums_the_waiting_calls_of_live_clients() -> None:
    base = metrics.REGISTRY.get_sample_value(GAUGE)
    assert base is not None
    first, second = Client(3), Client(4)
    metrics.watch_golem_queue(first)
    metrics.watch_golem_queue(second)
    assert metrics.REGISTRY.get_sample_value(GAUGE) == base + 7
    second.queued_requests = 0
    assert metrics.REGISTRY.get_sample_value(GAUGE) == base + 3
    del first
    gc.collect()
    # A closed and dropped client no longer counts.
    assert metrics.REGISTRY.get_sample_value(GAUGE) == base
