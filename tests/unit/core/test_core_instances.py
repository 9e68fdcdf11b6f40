"""Core transactions behind the instance objects: respawn and successor, run failure, stop
requests, payment records, status bounds and the revision hash."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from core_builders import T0, make_instance, make_spec
from hypothesis import given
from hypothesis import strategies as st

from golem_operator.api.status import (
    AVOIDED_MAX,
    DOWNLOADS_MAX_ITEMS,
    DOWNLOADS_TOTAL_MAX,
    Download,
    GolemServiceStatus,
)
from golem_operator.api.status import InstanceState as S
from golem_operator.core import plan as planning
from golem_operator.core import transactions as tx
from golem_operator.core.revision import revision
from golem_operator.core.states import Event as E


def test_a_respawn_with_an_agreement_ends_it_and_a_successor_takes_the_slot() -> None:
    status = GolemServiceStatus(instance_counter=1)
    failed = make_instance("web-1", S.STARTING, agreementId="a1", restarts=0)
    status.instances.append(failed)
    tx.transition(failed, E.START_FAILED, make_spec(), T0, "start script failed")
    successor = tx.respawned(status, failed, "web", T0, "start script failed", "rev1")
    assert successor is not None and successor.name == "web-2"
    assert successor.state is S.PENDING and successor.revision == "rev1"
    assert successor.restarts == 1 and failed.restarts == 0
    # The old record stays, Terminated, until its invoice settles it.
    assert failed.state is S.TERMINATED and not failed.settled
    assert failed.terminated_at == tx.iso(T0)
    assert failed.message.endswith("replaced by web-2")
    assert status.instances == [failed, successor]


def test_a_respawn_without_an_agreement_keeps_the_instance_pending() -> None:
    status = GolemServiceStatus()
    instance = make_instance("web-1", S.PENDING)
    status.instances.append(instance)
    tx.transition(instance, E.START_FAILED, make_spec(), T0, "no offer")
    assert tx.respawned(status, instance, "web", T0, "no offer", "r") is None
    assert instance.state is S.PENDING and status.instances == [instance]


def test_a_failure_the_policy_does_not_replace_is_final() -> None:
    status = GolemServiceStatus()
    instance = make_instance("web-1", S.STARTING, agreementId="a1")
    spec = make_spec(respawnUnstartedInstances=False)
    tx.transition(instance, E.START_FAILED, spec, T0, "boom")
    assert tx.respawned(status, instance, "web", T0, "boom", "r") is None
    assert instance.state is S.TERMINATED and instance.final


def test_run_failure_finality_follows_the_restart_policy() -> None:
    for policy, final in (("Always", False), ("OnFailure", False), ("Never", True)):
        instance = make_instance("web-1", S.RUNNING)
        tx.run_failed(instance, make_spec(restartPolicy=policy))
        assert instance.stopping_reason == "RunFailed" and instance.final is final


def test_a_stop_request_is_recorded_once() -> None:
    instance = make_instance("web-1", S.RUNNING)
    assert tx.request_stop(instance, planning.INSTANCE_DELETED)
    assert not tx.request_stop(instance, planning.INSTANCE_DELETED)
    assert instance.stopping_reason == "InstanceDeleted"


@given(st.lists(st.decimals(min_value=0, max_value=100, places=6), min_size=1, max_size=8))
def test_payments_add_only_the_increase_of_the_running_total(totals: list[Decimal]) -> None:
    status = GolemServiceStatus()
    instance = make_instance("web-1", S.RUNNING, agreementId="a1")
    for total in totals:
        assert tx.record_payment(status, instance, "debit note", total, accepted=True)
    assert Decimal(instance.spent) == max(totals)
    assert Decimal(status.spent) == max(totals)
    assert not instance.settled


def test_an_invoice_settles_once_and_a_rejection_adds_nothing() -> None:
    status = GolemServiceStatus(spent="1")
    instance = make_instance("web-1", S.TERMINATED, agreementId="a1", spent="0.5")
    assert tx.record_payment(status, instance, "invoice", Decimal("9"), accepted=False)
    assert instance.settled and instance.spent == "0.5" and status.spent == "1"
    assert not tx.record_payment(status, instance, "invoice", Decimal("0.6"), accepted=True)
    assert status.spent == "1"


def test_downloads_are_bounded_in_count_and_total_size() -> None:
    big = "x" * (DOWNLOADS_TOTAL_MAX // 3 + 10)
    downloads = [Download(path=f"/f{i}", content=big) for i in range(DOWNLOADS_MAX_ITEMS + 4)]
    kept = tx.bound_downloads(downloads)
    assert len(kept) == DOWNLOADS_MAX_ITEMS
    assert sum(len(d.content) for d in kept) == DOWNLOADS_TOTAL_MAX
    assert [d.truncated for d in kept[:4]] == [False, False, True, True]
    assert kept[0].content == big


def test_avoided_providers_are_bounded_and_expired_ones_dropped() -> None:
    status = GolemServiceStatus(avoided_providers={"0xold": tx.iso(T0 - timedelta(seconds=1))})
    for i in range(AVOIDED_MAX + 10):
        tx.avoid(status, f"0x{i:04x}", T0 + timedelta(seconds=30 + i), T0)
    assert len(status.avoided_providers) == AVOIDED_MAX
    assert "0xold" not in status.avoided_providers
    # The ones avoided longest are kept.
    assert f"0x{AVOIDED_MAX + 9:04x}" in status.avoided_providers
    assert "0x0000" not in status.avoided_providers


def test_counts_by_state() -> None:
    instances = [
        make_instance("a-1", S.RUNNING),
        make_instance("a-2", S.RUNNING),
        make_instance("a-3", S.PENDING),
        make_instance("a-4", S.TERMINATED),
    ]
    counts = tx.count_states(instances)
    assert (counts.running, counts.pending, counts.terminated, counts.starting) == (2, 1, 1, 0)


def test_the_revision_follows_what_instances_run_not_how_many() -> None:
    base = make_spec(replicas=2)
    assert revision(base) == revision(make_spec(replicas=7, budget="99"))
    assert len(revision(base)) == 10
    other = make_spec(lifecycle={"run": {"commands": [{"run": {"entrypoint": "/bin/true"}}]}})
    assert revision(other) != revision(base)


def test_an_instance_deleted_by_the_user_is_pruned_once_settled_or_after_the_wait() -> None:
    budget = planning.Budget(Decimal(10), Decimal(0), Decimal(0), Decimal(0))
    settled = make_instance(
        "w-1", S.TERMINATED, stoppingReason="InstanceDeleted", settled=True, agreementId="a"
    )
    waiting = make_instance(
        "w-2",
        S.TERMINATED,
        stoppingReason="InstanceDeleted",
        agreementId="b",
        terminatedAt=tx.iso(T0),
    )

    def prunes(now_offset: float) -> list[planning.Action]:
        actions = planning.plan(
            replicas=0,
            instances=[settled, waiting],
            now=T0 + timedelta(seconds=now_offset),
            agreement_duration=timedelta(hours=1),
            budget=budget,
            invoice_wait=timedelta(seconds=300),
        )
        return [a for a in actions if isinstance(a, planning.PruneInstance)]

    assert prunes(10) == [planning.PruneInstance("w-1")]
    assert prunes(301) == [
        planning.PruneInstance("w-1"),
        planning.PruneInstance("w-2", retire=True),
    ]


def test_an_instance_deleted_by_the_user_releases_its_replica_slot() -> None:
    failed = make_instance("w-1", S.TERMINATED, final=True, stoppingReason="RunFailed")
    assert planning.counted([failed]) == [failed]
    tx.request_stop(failed, planning.INSTANCE_DELETED)
    assert planning.counted([failed]) == []
