"""The end user a request body names, kept on its ledger row for GDPR erasure by user."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admission.admission import end_user_of


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"user": "alice"}, "alice"),
        ({"safety_identifier": "hash-1"}, "hash-1"),
        ({"user": "alice", "safety_identifier": "hash-1"}, "alice"),
        ({"user": "", "safety_identifier": "hash-1"}, "hash-1"),
        ({"user": 5}, None),
        ({"user": None}, None),
        ({}, None),
        ({"user": "x" * 300}, "x" * 256),
    ],
)
def test_end_user_of(payload: dict[str, Any], expected: str | None) -> None:
    assert end_user_of(payload) == expected
