"""Uploaded Secret content never leaves in status or Events: the redactor's forms."""

from __future__ import annotations

import base64

from hypothesis import assume, given
from hypothesis import strategies as st

from golem_operator.core.redaction import MARKER, Redactor

SECRET = b"s3cr3t-token-value\n"


def redactor(*contents: bytes) -> Redactor:
    r = Redactor()
    for content in contents:
        r.add(content)
    return r


def test_plain_trimmed_and_base64_forms_are_replaced() -> None:
    r = redactor(SECRET)
    for leaked in [
        "token: s3cr3t-token-value",
        "s3cr3t-token-value\n",
        base64.b64encode(SECRET).decode(),
        base64.b64encode(SECRET.strip()).decode(),
        base64.b64encode(SECRET).decode().rstrip("="),
    ]:
        out = r.text(f"before {leaked} after")
        assert "s3cr3t" not in out
        assert MARKER in out
        assert out.startswith("before ") and out.endswith(" after")


def test_lines_around_the_secret_keep_their_newlines() -> None:
    r = redactor(b"abc-secret-123")
    assert r.text("abc-secret-123\nYWJjLXNlY3JldC0xMjMK\nnext\n") == f"{MARKER}\n{MARKER}\nnext\n"


def test_wrapped_base64_lines_and_secret_lines_are_replaced() -> None:
    pem = b"-----BEGIN KEY-----\n" + b"A1b2C3d4" * 30 + b"\n-----END KEY-----\n"
    r = redactor(pem)
    encoded = base64.encodebytes(pem).decode()  # 76-column lines, as `base64` prints
    out = r.text(encoded)
    assert all(line == MARKER for line in out.splitlines() if len(line) >= 8), out
    # One line of the Secret alone (e.g. `head -2 key.pem`) is still redacted.
    assert "A1b2C3d4" not in r.text(("A1b2C3d4" * 30) + "\n")


def test_trees_are_redacted_everywhere_and_unrelated_text_kept() -> None:
    r = redactor(SECRET)
    tree = {
        "instances": [
            {
                "lastRun": {"stdout": "x s3cr3t-token-value y", "message": "ok"},
                "downloads": [{"path": "/golem/work/t", "content": "s3cr3t-token-value"}],
            }
        ],
        "spent": "0.1",
        "count": 3,
    }
    out = r.tree(tree)
    assert "s3cr3t" not in repr(out)
    assert out["instances"][0]["lastRun"]["message"] == "ok"
    assert out["spent"] == "0.1" and out["count"] == 3


def test_an_empty_redactor_changes_nothing() -> None:
    r = Redactor()
    r.add(b"   \n")  # whitespace only: nothing to hide, and it would match everywhere
    assert not r
    tree = {"a": ["b", {"c": "d"}]}
    assert r.tree(tree) is tree


@given(
    secret=st.text(alphabet="0123456789ABCDXYZ", min_size=1, max_size=64),
    before=st.text(alphabet=" -_:=\n", max_size=20),
    after=st.text(alphabet=" -_:=\n", max_size=20),
)
def test_the_secret_never_survives_in_any_surrounding(secret: str, before: str, after: str) -> None:
    r = redactor(secret.encode())
    for form in (secret, base64.b64encode(secret.encode()).decode()):
        assume(form not in MARKER)
        assert form not in r.text(before + form + after)
