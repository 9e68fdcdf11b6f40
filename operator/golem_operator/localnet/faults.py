"""Transient failures of the local daemon's REST API (`daemon_faults`): 5xx and slow answers.

Matched by `localnet.api`'s fault middleware on every authenticated request outside the admin
paths; configured in the providers YAML and replaceable at run time through
`PUT` or `POST /_localnet/daemon-faults`.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass
from typing import Any

from golem_operator.localnet.config import DaemonFault


@dataclass
class _Rule:
    fault: DaemonFault
    failures: int = 0


class DaemonFaults:
    """The active daemon faults and how often each fired."""

    def __init__(self, faults: list[DaemonFault], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._rules: list[_Rule] = []
        self.replace(faults)

    def replace(self, faults: list[DaemonFault]) -> None:
        self._rules = [_Rule(fault) for fault in faults]

    def match(self, method: str, path: str) -> DaemonFault | None:
        """The fault to inject into this request (counted), or None to serve it normally."""
        for rule in self._rules:
            fault = rule.fault
            if fault.method not in (None, "*", method.upper()):
                continue
            if not fnmatch.fnmatchcase(path, fault.path):
                continue
            if fault.count is not None and rule.failures >= fault.count:
                continue
            if fault.probability < 1 and self._rng.random() >= fault.probability:
                continue
            rule.failures += 1
            return fault
        return None

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                **rule.fault.model_dump(mode="json"),
                "failures": rule.failures,
                "left": None if rule.fault.count is None else rule.fault.count - rule.failures,
            }
            for rule in self._rules
        ]
