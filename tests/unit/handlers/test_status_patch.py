"""The status writer's merge patches: applying one to the last written status gives the new one."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from golem_operator.handlers.status import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, as an API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# Status documents: no nulls (the writer dumps with exclude_none), nested objects and lists.
scalars = st.one_of(st.booleans(), st.integers(), st.text(max_size=5))
keys = st.sampled_from(["allocationId", "demandId", "avoidedProviders", "p1", "p2", "spent"])
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)
statuses = st.dictionaries(keys, documents, max_size=5)


@settings(max_examples=300, deadline=None)  # a loaded machine must not fail it
@given(statuses, statuses)
def test_applying_the_patch_to_the_old_status_gives_the_new_one(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new


def test_a_cleared_field_is_sent_as_null() -> None:
    old = {"allocationId": "a-1", "spent": "0.5", "avoidedProviders": {"p1": "t1", "p2": "t2"}}
    new = {"spent": "0.5", "avoidedProviders": {"p2": "t2"}}
    assert merge_patch(old, new) == {"allocationId": None, "avoidedProviders": {"p1": None}}


def test_an_unchanged_status_patches_nothing() -> None:
    status = {"spent": "1", "conditions": [{"type": "Ready"}], "avoidedProviders": {"p": "t"}}
    assert merge_patch(status, dict(status)) == {}
