"""Rollouts: the update strategy resolved to numbers, availability, and the rollout's status
(revisions, progress, the Progressing condition's reason). Pure.

Called by ``core.plan`` (how many instances may be added and stopped) and by
``core.transactions.summarize`` (what the status says about the rollout). The numbers follow a
Deployment's: maxSurge is rounded up, maxUnavailable down, and when both come to 0 one
instance may be unavailable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from golem_operator.api.spec import GolemServiceSpec, UpdateStrategyType
from golem_operator.api.status import (
    REVISIONS_MAX,
    GolemServiceStatus,
    Instance,
    Progress,
    RevisionRecord,
)
from golem_operator.api.status import InstanceState as S

#: Deployment's defaults for maxSurge and maxUnavailable.
DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"

#: Stop reason of an instance of an older revision stopped by a rollout.
REVISION_UPDATED = "RevisionUpdated"

#: Progressing reasons, after a Deployment's (NewReplicaSetAvailable, ReplicaSetUpdated,
#: ProgressDeadlineExceeded, DeploymentPaused).
NEW_REVISION_AVAILABLE = "NewRevisionAvailable"
REVISION_UPDATING = "RevisionUpdating"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
ROLLOUT_PAUSED = "RolloutPaused"


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """A count, or a percentage of `total` rounded up or down."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


@dataclass(frozen=True)
class Strategy:
    """The update strategy as numbers for `replicas` desired instances."""

    max_surge: int = 1
    max_unavailable: int = 0
    recreate: bool = False
    min_ready: timedelta = timedelta(0)
    paused: bool = False

    @classmethod
    def resolve(
        cls,
        replicas: int,
        surge: int | str = DEFAULT_SURGE,
        unavailable: int | str = DEFAULT_UNAVAILABLE,
        *,
        recreate: bool = False,
        min_ready: timedelta = timedelta(0),
        paused: bool = False,
    ) -> Strategy:
        max_surge = scaled(surge, replicas, round_up=True)
        max_unavailable = scaled(unavailable, replicas, round_up=False)
        if max_surge == 0 and max_unavailable == 0:
            # As a Deployment does: percentages that round to nothing still let one go.
            max_unavailable = 1
        return cls(max_surge, max_unavailable, recreate, min_ready, paused)

    @classmethod
    def of(cls, spec: GolemServiceSpec) -> Strategy:
        update = spec.update_strategy
        rolling = update.rolling_update
        recreate = update.type is UpdateStrategyType.RECREATE
        surge: int | str
        unavailable: int | str
        if recreate:
            # Renewals under Recreate still surge: an agreement's end is no reason for downtime.
            surge, unavailable = DEFAULT_SURGE, 0
        elif rolling is None:
            surge, unavailable = DEFAULT_SURGE, DEFAULT_UNAVAILABLE
        else:
            surge, unavailable = rolling.max_surge, rolling.max_unavailable
        return cls.resolve(
            spec.replicas,
            surge,
            unavailable,
            recreate=recreate,
            min_ready=timedelta(seconds=spec.min_ready_seconds),
            paused=spec.paused,
        )


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def available(instance: Instance, now: datetime, min_ready: timedelta) -> bool:
    """Running, not asked to stop, and Running for at least min_ready."""
    if instance.state is not S.RUNNING or instance.stopping_reason:
        return False
    started = _time(instance.started_at)
    return started is None or now - started >= min_ready


# --- the rollout's status ----------------------------------------------------------------------


def record_revision(
    status: GolemServiceStatus,
    update: str,
    generation: int,
    image: str,
    limit: int,
    now: datetime,
) -> None:
    """Remember `update` as the newest revision (moved to the end if known), keeping the
    current revision, the update revision and `limit` older ones."""
    if status.revisions and status.revisions[-1].revision == update:
        return  # already the newest (a change of replicas or budget is no new revision)
    records = [r for r in status.revisions if r.revision != update]
    newest = RevisionRecord(
        revision=update,
        generation=generation,
        applied_at=now.isoformat(timespec="seconds"),
        image=image[:512],
    )
    keep = {update, status.current_revision}
    older = [r for r in records if r.revision not in keep]
    pinned = [r for r in records if r.revision in keep]
    older = older[max(len(older) - limit, 0) :] if limit > 0 else []
    kept = {r.revision for r in older} | {r.revision for r in pinned}
    status.revisions = [r for r in records if r.revision in kept][-(REVISIONS_MAX - 1) :]
    status.revisions.append(newest)


@dataclass(frozen=True)
class RolloutState:
    """What the instances say about the rollout towards the update revision."""

    updated: int  # instances of the update revision that hold a replica
    updated_available: int
    old: int  # instances of older revisions still active (Starting, Running, Stopping)
    complete: bool

    def mark(self, revision: str) -> str:
        return f"{revision}/{self.updated}/{self.updated_available}/{self.old}"


def rollout_state(
    holding: list[Instance],
    instances: list[Instance],
    update: str,
    replicas: int,
    now: datetime,
    min_ready: timedelta,
) -> RolloutState:
    updated = [i for i in holding if i.revision == update]
    updated_available = sum(1 for i in updated if available(i, now, min_ready))
    old = sum(
        1
        for i in instances
        if i.revision != update and i.state in (S.PENDING, S.STARTING, S.RUNNING, S.STOPPING)
    )
    complete = old == 0 and updated_available >= replicas and len(holding) == len(updated)
    return RolloutState(len(updated), updated_available, old, complete)


def progressing(
    status: GolemServiceStatus,
    state: RolloutState,
    update: str,
    *,
    paused: bool,
    deadline: timedelta,
    now: datetime,
    why_stalled: str = "",
) -> tuple[bool, str, str]:
    """The rollout's Progressing condition (status, reason, message); records progress.

    Progress is any change of the update revision's instances or of the old ones left: a new
    instance created or available, an old one gone. A rollout that makes none for `deadline`
    is reported as ProgressDeadlineExceeded (and goes on trying, as a Deployment's does).
    """
    mark = state.mark(update)
    last = status.last_progress
    if last is None or last.mark != mark or paused:
        # A paused rollout makes no progress by design: its clock starts again on resume.
        status.last_progress = Progress(mark=mark, time=now.isoformat(timespec="seconds"))
        last = status.last_progress
    counts = (
        f"revision {update}: {state.updated_available} of {state.updated} updated instances "
        f"available, {state.old} of older revisions left"
    )
    if state.complete:
        return True, NEW_REVISION_AVAILABLE, f"revision {update} is available"
    if paused:
        return False, ROLLOUT_PAUSED, f"rollout paused (spec.paused); {counts}"
    since = now - datetime.fromisoformat(last.time)
    if since > deadline:
        text = f"no progress for {int(since.total_seconds())}s; {counts}"
        if why_stalled:
            text += f"; {why_stalled}"
        return False, PROGRESS_DEADLINE_EXCEEDED, text
    return True, REVISION_UPDATING, counts


def current_revision(
    status: GolemServiceStatus, state: RolloutState, update: str, holding: list[Instance]
) -> str:
    """The revision the service last ran in full: the update revision once complete; before
    anything was recorded, the revision most instances run."""
    if state.complete:
        return update
    if status.current_revision:
        return status.current_revision
    revisions = [i.revision for i in holding if i.revision]
    return max(sorted(set(revisions)), key=revisions.count) if revisions else ""


@dataclass(frozen=True)
class Target:
    """What summarize needs to know of the spec for the rollout's status."""

    revision: str
    min_ready: timedelta = timedelta(0)
    paused: bool = False
    deadline: timedelta = timedelta(seconds=600)
    history_limit: int = 10
    image: str = ""

    @classmethod
    def of(cls, spec: GolemServiceSpec, revision: str) -> Target:
        image = spec.payload.image
        return cls(
            revision=revision,
            min_ready=timedelta(seconds=spec.min_ready_seconds),
            paused=spec.paused,
            deadline=timedelta(seconds=spec.progress_deadline_seconds),
            history_limit=spec.revision_history_limit,
            image=image.tag or image.hash or image.url or "",
        )


def why_stalled(instances: list[Instance], update: str) -> str:
    """The latest failure of an instance of the update revision, if any."""
    failures = [
        i
        for i in instances
        if i.revision == update
        and i.reason in ("StartFailed", "RunFailed", "ActivityLost")
        and i.last_transition_time
    ]
    if not failures:
        return ""
    last = max(failures, key=lambda i: i.last_transition_time or "")
    return f"instance {last.name} {last.reason}: {last.message}"
