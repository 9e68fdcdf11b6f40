"""Keeping uploaded Secret content out of status, Events and logs. Pure.

A script may print what it was given (``cat /golem/work/token``, ``base64 file``), and a
download command may fetch it back: whatever the operator writes from script output passes
through a ``Redactor`` that knows the content of every Secret the service's upload commands
read, and replaces it — and its base64 forms — with a marker.

Covered: the whole content, its whitespace-trimmed form, each of its lines of at least
``MIN_FRAGMENT`` characters, and its base64 encoding whole, without padding and in the
76-column lines `base64` prints. Not covered: other encodings (hex, URL-encoding), base64 of
the content embedded at an offset in other bytes, and fragments shorter than a line.
"""

from __future__ import annotations

import base64
from typing import Any

MARKER = "[redacted: Secret content]"
#: Shorter lines of a multi-line Secret are not redacted on their own (they would match
#: everywhere); the whole content always is, whatever its length.
MIN_FRAGMENT = 8


def secret_forms(content: bytes) -> set[str]:
    """The strings under which ``content`` may appear in script output."""
    forms: set[str] = set()
    for raw in (content, content.strip()):
        if raw:
            forms.add(raw.decode("utf-8", "replace"))
    # `echo "$VALUE" | base64` encodes the trimmed value plus a newline.
    for raw in {content, content.strip(), content.strip() + b"\n"}:
        if not raw.strip():
            continue
        encoded = base64.b64encode(raw).decode()
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
        forms.update(
            chunk
            for i in range(0, len(encoded), 76)
            if len(chunk := encoded[i : i + 76]) >= MIN_FRAGMENT
        )
    text = content.decode("utf-8", "replace")
    forms.update(line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_FRAGMENT)
    forms.discard("")
    return forms


class Redactor:
    """The Secret contents one service uploads, and their removal from text."""

    def __init__(self) -> None:
        self._forms: list[str] = []
        self._known: set[bytes] = set()

    def add(self, content: bytes) -> None:
        if content in self._known or not content.strip():
            return
        self._known.add(content)
        forms = set(self._forms) | secret_forms(content)
        # Longest first: a whole value goes before the lines it contains.
        self._forms = sorted(forms, key=lambda f: (-len(f), f))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, value: str) -> str:
        for form in self._forms:
            if form in value:
                value = value.replace(form, MARKER)
        return value

    def tree(self, value: Any) -> Any:
        """A JSON-like value with every string redacted (dict keys included)."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.tree(k): self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value
