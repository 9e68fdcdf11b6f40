"""When the demand is published again: a change to what it says, or Pending instances starving.

`demand_changed` must keep the demand (and its collected offers) across replica, budget and
other changes that build_demand does not read, and must replace it whenever build_demand's
output would differ. `demand_refresh_due` decides when starving Pending instances get a fresh
demand, with a backoff.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from core_builders import IMAGE_HASH, T0, make_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.api.spec import GolemServiceSpec
from golem_operator.core.images import ResolvedImage
from golem_operator.core.market import (
    REFRESH_AFTER,
    REFRESH_MAX,
    STARVED_STALE,
    Starvation,
    build_demand,
    demand_changed,
    demand_refresh_due,
    refresh_wait,
)

#: Changes build_demand never reads: what is rented and how many, not what is asked for.
KEEPING: dict[str, dict[str, Any]] = {
    "replicas": {"replicas": 7},
    "budget": {"budget": "250.5"},
    "lifecycle": {
        "lifecycle": {"start": {"commands": [{"deploy": {}}, {"start": {}}], "timeoutSeconds": 99}}
    },
    "restartPolicy": {"restartPolicy": "Never"},
    "respawn": {"respawnUnstartedInstances": False},
    "renewBefore": {"renewBefore": "7m"},
    "caps": {"market": {"maxStartPrice": "0.5", "maxCpuPerHour": "1", "maxEnvPerHour": "2"}},
    "providers": {"market": {"providers": {"allow": ["p-1"], "deny": ["p-2"]}}},
}

#: Changes the published demand says (one per input build_demand reads).
REPLACING: dict[str, dict[str, Any]] = {
    "image": {"payload": {"image": {"hash": "ab" * 28}}},
    "memory": {"payload": {"minMemGib": 4}},
    "storage": {"payload": {"minStorageGib": 9}},
    "threads": {"payload": {"minCpuThreads": 3}},
    "capabilities": {"payload": {"capabilities": ["vpn"]}},
    "properties": {"payload": {"properties": {"x.y": 1}}},
    "constraints": {"payload": {"constraints": ["(a=b)"]}},
    "subnet": {"market": {"subnetTag": "elsewhere"}},
    "platform": {"market": {"payment": {"network": "polygon"}}},
    "debitNotes": {"market": {"debitNoteIntervalSeconds": 60}},
    "paymentTimeout": {"market": {"paymentTimeoutSeconds": 1200}},
    "agreementDuration": {"agreementDuration": "2h"},
}


def demand_of(spec: GolemServiceSpec) -> tuple[dict[str, Any], str]:
    digest = spec.payload.image.hash or IMAGE_HASH
    image = ResolvedImage(digest, "http://127.0.0.1:8000/download/" + digest)
    built = build_demand(spec, image=image, now=T0, node_name="n", requestor_address="0x1")
    return built.properties, built.constraints


def spec_with(names: list[str], table: dict[str, dict[str, Any]]) -> GolemServiceSpec:
    body: dict[str, Any] = {"payload": {"image": {"hash": IMAGE_HASH}}}
    for name in names:
        for key, value in table[name].items():
            if isinstance(value, dict) and isinstance(body.get(key), dict):
                body[key] = {**body[key], **value}
            else:
                body[key] = value
    return make_spec(**body)


@pytest.mark.parametrize("change", sorted(KEEPING))
def test_a_change_the_demand_does_not_read_keeps_it(change: str) -> None:
    before, after = make_spec(), spec_with([change], KEEPING)
    assert before != after
    assert not demand_changed(before, after)
    assert demand_of(before) == demand_of(after)


@pytest.mark.parametrize("change", sorted(REPLACING))
def test_a_change_to_what_the_demand_says_replaces_it(change: str) -> None:
    before, after = make_spec(), spec_with([change], REPLACING)
    assert demand_changed(before, after)
    assert demand_of(before) != demand_of(after)


def test_no_published_demand_is_no_change() -> None:
    assert not demand_changed(None, make_spec())


@settings(max_examples=80, deadline=None)
@given(
    keeping=st.lists(st.sampled_from(sorted(KEEPING)), unique=True),
    replacing=st.lists(st.sampled_from(sorted(REPLACING)), unique=True, max_size=3),
    replicas=st.integers(min_value=0, max_value=10000),
)
def test_the_demand_is_replaced_exactly_when_its_content_differs(
    keeping: list[str], replacing: list[str], replicas: int
) -> None:
    before = make_spec()
    after = spec_with(keeping + replacing, {**KEEPING, **REPLACING}).model_copy(
        update={"replicas": replicas}
    )
    assert demand_changed(before, after) == (demand_of(before) != demand_of(after))
    assert demand_changed(before, after) == bool(replacing)


# --- starving Pending instances ------------------------------------------------------------


def starving(
    since: float | None = 0.0,
    last_asked: float | None = None,
    subscribed: float = 0.0,
    negotiating: int = 0,
    streak: int = 0,
) -> Starvation:
    return Starvation(since, last_asked, subscribed, negotiating, streak)


def test_a_starving_pending_instance_gets_a_fresh_demand_after_the_wait() -> None:
    observed = starving(since=0.0, last_asked=REFRESH_AFTER)
    assert not demand_refresh_due(observed, pending=1, now=REFRESH_AFTER - 0.1)
    assert demand_refresh_due(observed, pending=1, now=REFRESH_AFTER)


def test_nothing_pending_or_an_offer_found_means_no_refresh() -> None:
    now = 10 * REFRESH_MAX
    assert not demand_refresh_due(starving(last_asked=now), pending=0, now=now)
    assert not demand_refresh_due(starving(since=None, last_asked=now), pending=3, now=now)
    assert not demand_refresh_due(starving(last_asked=None), pending=3, now=now)


def test_a_negotiation_in_flight_is_never_cut_off() -> None:
    now = 10 * REFRESH_MAX
    assert not demand_refresh_due(starving(last_asked=now, negotiating=1), pending=5, now=now)


def test_a_starvation_nobody_asks_about_any_more_is_stale() -> None:
    now = 10 * REFRESH_MAX
    assert not demand_refresh_due(starving(last_asked=now - STARVED_STALE - 1), pending=1, now=now)


def test_a_young_demand_is_given_the_whole_wait() -> None:
    now = 10 * REFRESH_MAX
    young = starving(since=0.0, last_asked=now, subscribed=now - REFRESH_AFTER / 2)
    assert not demand_refresh_due(young, pending=1, now=now)


def test_fruitless_refreshes_back_off_to_a_ceiling() -> None:
    waits = [refresh_wait(streak) for streak in range(12)]
    assert waits[0] == REFRESH_AFTER
    assert all(b >= a for a, b in itertools.pairwise(waits))
    assert waits[1] == 2 * REFRESH_AFTER
    assert waits[-1] == REFRESH_MAX
    assert refresh_wait(10**6) == REFRESH_MAX


@settings(max_examples=300, deadline=None)
@given(
    since=st.floats(min_value=0, max_value=1e5),
    subscribed=st.floats(min_value=0, max_value=1e5),
    elapsed=st.floats(min_value=0, max_value=1e4),
    asked_ago=st.floats(min_value=0, max_value=2 * STARVED_STALE),
    streak=st.integers(min_value=0, max_value=40),
    pending=st.integers(min_value=0, max_value=10),
    negotiating=st.integers(min_value=0, max_value=3),
)
def test_refresh_rule_properties(
    since: float,
    subscribed: float,
    elapsed: float,
    asked_ago: float,
    streak: int,
    pending: int,
    negotiating: int,
) -> None:
    now = max(since, subscribed) + elapsed
    observed = starving(since, now - asked_ago, subscribed, negotiating, streak)
    due = demand_refresh_due(observed, pending=pending, now=now)
    wait = refresh_wait(streak)
    # Due exactly when someone starves, nothing is cut off, and the backoff wait has passed
    # both since the starvation began and since the demand was published.
    expected = (
        pending > 0
        and negotiating == 0
        and asked_ago <= STARVED_STALE
        and now - since >= wait
        and now - subscribed >= wait
    )
    assert due == expected
    if due:
        assert now - subscribed >= REFRESH_AFTER
        # Still due a moment later while the instance keeps asking.
        later = starving(since, now + 1, subscribed, negotiating, streak)
        assert demand_refresh_due(later, pending=pending, now=now + 1)
