"""Identities the test control plane knows from its start (static tokens cannot be added later)."""

from __future__ import annotations

#: The chart's ServiceAccount in the RBAC test: the operator runs authenticated as it.
RBAC_NAMESPACE = "golem-rbac"
RBAC_RELEASE = "rbac"
RBAC_TOKEN = "golem-operator-rbac-test-token"
RBAC_USER = f"system:serviceaccount:{RBAC_NAMESPACE}:{RBAC_RELEASE}-golem-operator"
RBAC_GROUPS = f"system:serviceaccounts,system:serviceaccounts:{RBAC_NAMESPACE},system:authenticated"
