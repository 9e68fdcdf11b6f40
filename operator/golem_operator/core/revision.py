"""The revision of a GolemService: a hash of what its instances run. Pure.

Two specs that differ only in replicas, budget or other settings of the service as a whole
have the same revision; a change to the payload, the lifecycle scripts, the market or the
network (an instance joins its VPN when it deploys) makes a new one. Instances carry the
revision they were started with (label and spec).
"""

from __future__ import annotations

import hashlib
import json

from golem_operator.api.spec import GolemServiceSpec

#: The parts of the spec an instance runs.
_RUNS = ("payload", "lifecycle", "market")


def revision(spec: GolemServiceSpec) -> str:
    """A short, stable hash of what an instance of `spec` runs (10 hex characters)."""
    body = spec.model_dump(by_alias=True, mode="json", include=set(_RUNS))
    if spec.network is not None:
        # Only when set: the revisions of services without a VPN stay what they were.
        body["network"] = spec.network.model_dump(by_alias=True, mode="json")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]
