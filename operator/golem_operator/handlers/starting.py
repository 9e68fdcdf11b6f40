"""Phases Pending and Starting: find a provider, sign, create the activity, run the start script.

Called by an instance's driver. Every Golem object is recorded in status (and the status
flushed) before the operator relies on it: the agreement id before confirming, the activity
id before executing anything on it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta

from golem_operator.api.status import Instance, Provider
from golem_operator.core import transactions as tx
from golem_operator.core.market import ACTIVITY_WINDOW, activity_window_missed, agreement_end
from golem_operator.core.states import Event
from golem_operator.crashpoints import crashpoint
from golem_operator.golem import (
    GolemClient,
    GolemConflict,
    GolemError,
    GolemGone,
    GolemNotFound,
    GolemTimeout,
    GolemUnauthorized,
    GolemUnavailable,
)
from golem_operator.handlers import networking, uploads
from golem_operator.handlers.host import InstanceHost
from golem_operator.requestor.market import NegotiationFailed
from golem_operator.requestor.scripts import run_script

log = logging.getLogger(__name__)

#: How long a provider that failed a negotiation is skipped.
NEGOTIATION_PAUSE = timedelta(seconds=30)


def now() -> datetime:
    return datetime.now(UTC)


async def acquire(worker: InstanceHost, instance: Instance) -> None:
    """Pending: negotiate an agreement; on approval the instance is Starting."""
    if instance.stopping_reason:
        await _abandon_pending(worker, instance)
        worker.transition(
            instance, Event.STOP_REQUESTED, f"stopped before start ({instance.stopping_reason})"
        )
        return
    assert worker.daemon is not None
    market_api = worker.daemon.client.market
    if instance.agreement_id:
        # Recorded before a crash: adopt it if it got approved, else drop it.
        try:
            agreement = await market_api.get_agreement(instance.agreement_id)
            if agreement.state == "Proposal":
                # Recorded, then the operator stopped before confirming: finish the handshake
                # (an unconfirmed agreement cannot be withdrawn, only left to expire).
                with contextlib.suppress(GolemConflict):
                    await market_api.confirm_agreement(instance.agreement_id)
                agreement = await market_api.get_agreement(instance.agreement_id)
            if agreement.state == "Pending":
                # Confirmed before the crash: the provider may still approve it, and an
                # approved agreement must not be dropped unpaid (terminate fails on Pending).
                with contextlib.suppress(GolemError, NegotiationFailed):
                    await _wait_for_approval(worker, instance.agreement_id)
                agreement = await market_api.get_agreement(instance.agreement_id)
        except GolemNotFound:
            agreement = None
        if agreement is not None and agreement.state == "Approved":
            # Payments are judged from the approval time: without it every note is refused.
            approved = agreement.approved_date or now()
            instance.approved_at = approved.isoformat(timespec="seconds")
            worker.daemon.register(instance.agreement_id, worker)
            # Approved while still Pending on record: the operator stopped before the
            # activity's id was recorded, so an activity may exist that nobody knows (a second
            # one on the agreement would be paid twice). The agreement is ended (its invoice
            # still settles it) and a successor starts afresh.
            worker.transition(
                instance, Event.AGREEMENT_SIGNED, f"re-adopted agreement {instance.agreement_id}"
            )
            await fail_start(
                worker,
                instance,
                "the operator restarted before the activity's id was recorded",
                avoid=False,
            )
            return
        await _abandon_pending(worker, instance)
    market = worker.market
    if market is None:
        await worker.sleep_or_stop(instance.name, 1.0)
        return
    # An upload source that cannot be read (a missing Secret or key) would fail every start:
    # check before renting anything, rather than paying provider after provider.
    try:
        await uploads.resolve(
            worker,
            *uploads.script_commands(worker.spec_or_fail.lifecycle.start, "lifecycle.start"),
        )
    except uploads.UploadError as error:
        if not worker.spec_or_fail.respawn_unstarted_instances:
            worker.respawn(instance, Event.START_FAILED, f"start script: {error}")
            return
        if worker.start_blocked != str(error):
            worker.start_blocked = str(error)
            instance.message = f"not renting: {error}"[: tx.MESSAGE_CAP]
            worker.touch(instance)
            worker.wake.set()
        await worker.sleep_or_stop(instance.name, 5.0)
        return
    if worker.start_blocked is not None:
        worker.start_blocked = None
        worker.wake.set()
    # With spec.network: the network recorded and an ordinal taken before anything is rented.
    waiting = networking.reserve(worker, instance)
    if waiting is not None:
        if instance.message != waiting:
            instance.message = waiting[: tx.MESSAGE_CAP]
            worker.touch(instance)
        await worker.sleep_or_stop(instance.name, 2.0)
        return
    candidates = market.candidates(worker.avoided(), worker.provider_load())
    # Money first: sign nothing that could take the service over its budget.
    budget = worker.budget()
    room = budget.total - budget.spent - budget.committed
    affordable = [c for c in candidates if c.max_cost <= room]
    if candidates and not affordable:
        worker.budget_blocked.add(instance.name)
        cheapest = candidates[0].max_cost.normalize()
        message = (
            f"no offer fits the budget: the cheapest could cost {cheapest} GLM "
            f"over agreementDuration, {room.normalize()} GLM left"
        )
        if instance.message != message:
            instance.message = message[: tx.MESSAGE_CAP]
            worker.wake.set()
            worker.touch(instance)
        await market.wait_for_offers(5.0)
        return
    worker.budget_blocked.discard(instance.name)
    candidates = affordable
    if not candidates:
        refusals = "; ".join(market.last_refusals[:3])
        message = "waiting for offers" + (f" (refused: {refusals})" if refusals else "")
        if instance.message != message:
            instance.message = message[: tx.MESSAGE_CAP]
            # Routine: usually followed at once by the agreement's record, which takes it.
            worker.touch(instance, routine=True)
        await market.wait_for_offers(2.0)
        return
    choice = candidates[0]
    valid_to = agreement_end(worker.spec_or_fail, now())
    # Reserve the most it can cost while negotiating: instances negotiating at the same time
    # must not each see the whole budget free (the price is in status once it is signed).
    worker.reserved[instance.name] = choice.max_cost
    try:
        draft = await market.negotiate(choice, valid_to)
    except NegotiationFailed as failure:
        # Negotiation trouble is often transient (a busy provider): avoid it only briefly.
        worker.avoid(
            failure.provider_id or choice.offer.provider_id, str(failure), NEGOTIATION_PAUSE
        )
        return
    finally:
        worker.reserved.pop(instance.name, None)
    # Record before confirming: a crash from here on leaves an agreement status knows. One
    # before the record leaves an unconfirmed agreement that nobody can confirm: inert, it
    # expires at its validTo (yagna cannot withdraw it; see end_agreement).
    worker.log.info("instance %s: agreement %s created", instance.name, draft.agreement_id)
    offer = choice.offer
    instance.agreement_id = draft.agreement_id
    instance.provider = Provider(id=offer.provider_id, name=offer.provider_name)
    instance.price = choice.price.to_status()
    instance.agreement_expires_at = valid_to.isoformat(timespec="seconds")
    instance.message = f"signing agreement with {offer.provider_name or offer.provider_id}"
    worker.daemon.register(draft.agreement_id, worker)
    await worker.persist(instance)
    crashpoint("agreement-recorded")
    worker.log.info("instance %s: agreement %s recorded", instance.name, draft.agreement_id)
    try:
        await market_api.confirm_agreement(draft.agreement_id)
        await _wait_for_approval(worker, draft.agreement_id)
    except (GolemUnavailable, GolemUnauthorized):
        raise  # the daemon is down: the recorded agreement is checked again on the next pass
    except (GolemError, NegotiationFailed) as error:
        worker.avoid(offer.provider_id, f"agreement not approved: {error}", NEGOTIATION_PAUSE)
        await _abandon_pending(worker, instance)
        instance.message = (
            f"{offer.provider_name or offer.provider_id} did not approve; looking again"
        )
        worker.touch(instance)
        return
    crashpoint("agreement-approved")
    instance.approved_at = now().isoformat(timespec="seconds")
    worker.transition(
        instance,
        Event.AGREEMENT_SIGNED,
        f"agreement {draft.agreement_id} with {offer.provider_name or offer.provider_id}",
    )


async def _wait_for_approval(worker: InstanceHost, agreement_id: str) -> None:
    assert worker.daemon is not None
    for _ in range(3):
        try:
            await worker.daemon.client.market.wait_for_approval(agreement_id, timeout=10.0)
            return
        except GolemTimeout:
            continue
    raise NegotiationFailed("", "provider did not approve within 30s")


async def _abandon_pending(worker: InstanceHost, instance: Instance) -> None:
    """Drop an agreement that was never approved (nothing to pay).

    The agreement is cancelled (or terminated, had the provider approved it meanwhile)
    before its id leaves status: an error other than "already gone" propagates, the driver
    retries with backoff and the instance keeps the id meanwhile.
    """
    assert worker.daemon is not None
    if instance.agreement_id:
        await end_agreement(
            worker.daemon.client, instance.agreement_id, "not needed", code="Cancelled"
        )
        worker.daemon.unregister(instance.agreement_id)
    tx.release_golem_objects(instance)
    worker.touch(instance)


async def start(worker: InstanceHost, instance: Instance) -> None:
    """Starting: create the activity and run the start script once."""
    assert worker.daemon is not None and instance.agreement_id
    spec = worker.spec_or_fail
    client = worker.daemon.client
    if instance.stopping_reason:
        worker.transition(
            instance, Event.STOP_REQUESTED, f"stop requested ({instance.stopping_reason})"
        )
        return
    if instance.activity_id or instance.name in worker.activity_unknown:
        # The operator stopped during the start script, or while creating the activity (whose
        # id may be lost: a second activity would be paid twice). The start is redone from
        # scratch on a new agreement; the old one is terminated, which ends its activities.
        why = (
            "the operator restarted during the start script"
            if instance.activity_id
            else "the activity's creation was interrupted"
        )
        await fail_start(worker, instance, why, avoid=False)
        worker.activity_unknown.discard(instance.name)
        return
    if activity_window_missed(instance.approved_at, now()):
        # The provider ends an agreement that has no activity soon after approval: starting
        # now would race its termination. Not the provider's fault: it is not avoided.
        await fail_start(
            worker,
            instance,
            f"no activity within {int(ACTIVITY_WINDOW.total_seconds())}s of the agreement's "
            "approval (providers end such agreements)",
            avoid=False,
        )
        return
    try:
        deploy = await networking.join(worker, instance)
    except networking.NetworkUnavailable as unavailable:
        await fail_start(worker, instance, str(unavailable), avoid=False)
        return
    # Not written before the activity is created: after a crash, an instance on record with
    # an approved agreement and no activity id may own an activity (see acquire), so its
    # agreement is ended rather than reused. Starting and the activity id go in one write.
    try:
        activity_id = await client.activity.create_activity(instance.agreement_id, timeout=30.0)
    except GolemUnauthorized:
        raise
    except GolemUnavailable:
        worker.activity_unknown.add(instance.name)  # it may exist: never create a second one
        raise
    except GolemError as error:
        await fail_start(worker, instance, f"activity not created: {error.message}")
        return
    crashpoint("activity-created")
    instance.activity_id = activity_id
    instance.message = "running the start script"
    await worker.persist(instance)
    commands, field, offset = uploads.script_commands(spec.lifecycle.start, "lifecycle.start")
    try:
        contents = await uploads.resolve(worker, commands, field, offset)
    except uploads.UploadError as error:
        await fail_start(worker, instance, str(error))
        return
    try:
        result, downloads = await run_script(
            client,
            activity_id,
            commands,
            contents,
            spec.lifecycle.start.timeout_seconds,
            "start",
            deploy=deploy,
        )
    except GolemNotFound as gone:
        await fail_start(worker, instance, f"start script failed: start script: {gone.message}")
        return
    tx.record_run(instance, result, downloads)
    if result.success:
        worker.transition(instance, Event.START_SUCCEEDED, "start script succeeded")
    else:
        await fail_start(worker, instance, f"start script failed: {result.message}")


async def fail_start(
    worker: InstanceHost, instance: Instance, message: str, avoid: bool = True
) -> None:
    """The start failed: free the provider, then respawn elsewhere or end (per the spec).

    avoid=False when the provider is not to blame (the operator itself was interrupted).
    """
    assert worker.daemon is not None
    if instance.provider is not None and avoid:
        worker.avoid(instance.provider.id, message)
    await release(worker, instance, reason=message)
    worker.respawn(instance, Event.START_FAILED, message)


async def release(worker: InstanceHost, instance: Instance, reason: str) -> None:
    """Leave the VPN, destroy the activity and end the agreement; only "already gone" counts
    as done.

    Any other answer (5xx, a timeout, the daemon down) propagates: the driver retries with
    backoff and the instance stays in its state, its ids recorded, until the agreement ended.
    An activity that cannot be destroyed (its provider stopped answering) is no reason to
    wait when there is an agreement: ending the agreement ends its activities.
    """
    assert worker.daemon is not None
    client = worker.daemon.client
    await networking.leave(worker, instance)
    if instance.activity_id:
        try:
            await client.activity.destroy_activity(instance.activity_id, timeout=10.0)
        except ALREADY_GONE:
            pass
        except GolemError as error:
            if not instance.agreement_id or isinstance(error, GolemUnauthorized):
                raise
            worker.log.info(
                "instance %s: activity not destroyed (%s); ending its agreement ends it",
                instance.name,
                error,
            )
    if instance.agreement_id:
        await end_agreement(client, instance.agreement_id, reason, code="Success")


#: Answers saying the object no longer exists or is already past the requested state.
ALREADY_GONE = (GolemNotFound, GolemGone)


async def end_agreement(client: GolemClient, agreement_id: str, reason: str, code: str) -> None:
    """End an agreement in whatever state it is: terminate if approved, cancel if pending.

    Returns once the daemon says it is ended (or never existed); raises on any other answer,
    so that the caller keeps tracking it and retries. Terminate answers 409 for an agreement
    still in Proposal or Pending state, cancel answers 410 once the provider approved it.

    A Proposal (created, never confirmed) cannot be ended on yagna 0.17.6: cancel answers 500
    (the provider never received it) and terminate 409 (tests/contract). It is inert — only
    the requestor's confirm could send it to the provider — and expires at its validTo, so
    it counts as ended here.
    """
    body = {"message": reason[:200], "golem.requestor.code": code}
    for _ in range(3):
        try:
            await client.market.terminate_agreement(agreement_id, body)
            return
        except ALREADY_GONE:
            return
        except GolemConflict:
            pass  # not approved (yet)
        try:
            state = (await client.market.get_agreement(agreement_id)).state
        except GolemNotFound:
            return
        if state == "Proposal":
            log.info("agreement %s was never confirmed: left to expire unsigned", agreement_id)
            return
        if state != "Pending":
            continue  # approved (terminate it) or ended meanwhile (terminate says 410)
        try:
            await client.market.cancel_agreement(agreement_id, body)
            return
        except GolemNotFound:
            return
        except GolemGone:
            continue  # approved meanwhile: terminate it
    raise GolemConflict(f"agreement {agreement_id} changes state on every attempt to end it")
