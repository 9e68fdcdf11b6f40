"""kopf's last-handled-configuration, with long strings replaced by their digests.

kopf keeps a copy of each object's spec in an annotation to compute the diffs of update
handlers. Annotations hold at most 256 KiB in all, while a spec may be far larger (scripts,
inline uploads): kopf could then write neither that annotation nor the finalizer, and the
object could not even be deleted. Registered by the registration module. A digest changes
whenever its string does, so every change is still seen; the handlers read the body itself.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import kopf

#: Strings longer than this are stored as "sha256:<hex>" (71 characters).
LONGEST_KEPT = 256


def _digested(value: Any) -> Any:
    if isinstance(value, str) and len(value) > LONGEST_KEPT:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    if isinstance(value, dict):
        return {key: _digested(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_digested(item) for item in value]
    return value


class DigestingDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """AnnotationsDiffBaseStorage whose stored essence stays small whatever the spec."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, _digested(essence))
