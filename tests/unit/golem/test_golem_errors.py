"""Error classes and the pure helpers that build them from HTTP answers."""

from __future__ import annotations

import pytest

from golem_operator.golem import (
    GolemAgreementNotApproved,
    GolemConflict,
    GolemError,
    GolemGone,
    GolemNotFound,
    GolemServerError,
    GolemTimeout,
)
from golem_operator.golem.errors import error_for_status, message_from_body


def test_unlisted_status_falls_back_to_the_root() -> None:
    error = error_for_status(418, "teapot", method="GET", path="/me")
    assert type(error) is GolemError
    assert str(error) == "GET /me -> 418: teapot"


def test_gone_is_a_conflict_and_server_errors_are_not_timeouts() -> None:
    assert isinstance(error_for_status(410, "x", method="GET", path="/"), GolemConflict)
    assert type(error_for_status(409, "x", method="GET", path="/")) is GolemConflict
    assert type(error_for_status(502, "x", method="GET", path="/")) is GolemServerError
    assert type(error_for_status(504, "x", method="GET", path="/")) is GolemTimeout


def test_str_without_request_context() -> None:
    assert str(GolemError("plain")) == "plain"
    assert str(GolemError("m", status=500)) == "500: m"
    assert "message='m'" in repr(GolemError("m", status=500))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message": "Demand [x] not found."}', "Demand [x] not found."),
        (b'"Invalid application key"', "Invalid application key"),
        (b"Missing application key", "Missing application key"),
        (b"", "Not Found"),
        (b"   ", "Not Found"),
        (b'{"error": "other shape"}', '{"error": "other shape"}'),
        (b'{"message": ""}', "Not Found"),
        (b'{"message": null}', "Not Found"),  # yagna's 404 for an unknown allocation
        (b'{"message": null, "other": 1}', '{"message": null, "other": 1}'),
        (
            b'{"type": "/payment-api/v1/allocations/validation-error", '
            b'"detail": "Insufficient funds to create the allocation."}',
            "Insufficient funds to create the allocation.",
        ),
        (b"\xff\xfebroken", "\ufffd\ufffdbroken"),
    ],
)
def test_message_from_body(body: bytes, expected: str) -> None:
    assert message_from_body(body, fallback="Not Found") == expected


def test_long_messages_are_clipped() -> None:
    message = message_from_body(b"x" * 5000, fallback="")
    assert len(message) == 500 and message.endswith("…")


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("Rejected", "Rejected"),
        ("Agreement [abc] cancelled by requestor", "Cancelled"),
        ("Expired", "Expired"),
        ("agreement terminated", "Terminated"),
        ("something else", None),
    ],
)
def test_agreement_not_approved_outcome(message: str, outcome: str | None) -> None:
    error = GolemAgreementNotApproved(message, status=410, method="POST", path="/w")
    assert error.outcome == outcome
    assert isinstance(error, GolemGone)


def test_dao_not_found_server_error_is_not_found() -> None:
    # yagna 0.17.6: GET /activity/{unknown}/state -> 500 with this message.
    message = "DAO error: Not found: agreement id for activity: " + "0" * 32
    error = error_for_status(500, message, method="GET", path="/activity-api/v1/activity/x/state")
    assert type(error) is GolemNotFound
    assert error.status == 500
    other = error_for_status(500, "DAO error: connection lost", method="GET", path="/")
    assert type(other) is GolemServerError
