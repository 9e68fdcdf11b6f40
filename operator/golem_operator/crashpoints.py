"""Test-only crash points: die like kill -9 at a named moment of an instance's life.

The handlers call ``crashpoint("<name>")`` at the distinct points the reliability suite
(tests/reliability, scripts/soak.py) needs to hit deterministically. It does nothing unless
``GOLEM_OPERATOR_CRASH_AT=<name>[:n]`` is set; then the n-th time (default the first) the
process reaching that point exits at once with status 137, without cleanup or log flushing.
"""

from __future__ import annotations

import os

ENV = "GOLEM_OPERATOR_CRASH_AT"

#: Every point the handlers declare (the suite checks it covers each one).
POINTS = (
    "allocation-created",  # the allocation exists on Golem, its id not yet in status
    "demand-subscribed",  # the demand exists on Golem, its id not yet in status
    "instance-created",  # an instance object exists, its status never written
    "agreement-recorded",  # agreement created and in status, not yet confirmed
    "agreement-approved",  # approved by the provider, the instance not yet Starting
    "activity-created",  # activity created, its id not yet in status
    "start-script",  # the start script was sent and is running
    "run-script",  # a run script was sent and is running
    "debit-note-accepted",  # accepted on Golem, not yet counted in status.spent
    "stop-script",  # the stop script was sent and is running
    "invoice-accepted",  # accepted on Golem, the instance not yet marked settled
    "deletion-releasing",  # every instance settled; demand and allocation not yet released
)

_reached: dict[str, int] = {}


def crashpoint(name: str) -> None:
    """Exit with 137 if GOLEM_OPERATOR_CRASH_AT names this point and its count is reached."""
    armed = os.environ.get(ENV)
    if not armed:
        return
    point, _, nth = armed.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or "1"):
        os.write(2, f"\n*** crash point {name} reached: exiting with 137\n".encode())
        os._exit(137)


FAIL_ENV = "GOLEM_OPERATOR_FAIL_AT"

#: Points where a test can make the operator raise, to prove the loop around them survives.
FAIL_POINTS = (
    "payment-document",  # handling one debit note or invoice (it must be retried)
    "payments-poll",  # one pass of a payment event poll (the task must be restarted)
)

_failed: dict[str, int] = {}


class InjectedFailure(RuntimeError):
    """Raised at a fail point armed by GOLEM_OPERATOR_FAIL_AT."""


def failpoint(name: str) -> None:
    """Raise InjectedFailure the first n times this point is reached, if armed.

    ``GOLEM_OPERATOR_FAIL_AT=<name>:<n>[,<name>:<n>...]`` (n defaults to 1). Test-only, like the
    crash points: unset, it does nothing.
    """
    armed = os.environ.get(FAIL_ENV)
    if not armed:
        return
    for entry in armed.split(","):
        point, _, times = entry.strip().partition(":")
        if point != name:
            continue
        _failed[name] = _failed.get(name, 0) + 1
        if _failed[name] <= int(times or "1"):
            raise InjectedFailure(f"injected failure at {name} ({_failed[name]})")
