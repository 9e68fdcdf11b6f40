"""Whether this operator may act, from the status of its kopf peering object(s).

kopf pauses its handlers when a live peer with a higher (or the same) priority shares the
peering name, but not the operator's own tasks: the engine pauses those on this decision,
which applies kopf's rule (kopf/_core/engines/peering.py, process_peering_event) to the same
data. A peering object's status maps each peer's identity to its priority, lifetime (seconds)
and lastseen time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any


def may_act(
    peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: datetime
) -> bool:
    """True when this operator has announced itself and no live peer outranks or ties it.

    Until its own keep-alive shows up, kopf keeps a mandatory-peering operator paused too.
    """
    if identity not in peers:
        return False
    for peer, info in peers.items():
        if peer == identity:
            continue
        try:
            lastseen = datetime.fromisoformat(str(info.get("lastseen")))
            lifetime = timedelta(seconds=int(info.get("lifetime", 60)))
            rank = int(info.get("priority", 0))
        except (TypeError, ValueError):
            continue  # kopf cannot parse it either: not a peer
        if lastseen.tzinfo is None:
            lastseen = lastseen.replace(tzinfo=now.tzinfo)
        if lastseen + lifetime <= now:
            continue  # dead: its keep-alive lapsed
        if rank >= priority:
            return False
    return True
