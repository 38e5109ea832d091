"""Validating ops changes (pure): a partial autopilot update keeps the stored settings."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ops.controls import Autopilot, parse_changes

STORED = Autopilot(enabled=True, target_p95_ms=800, max_error_rate=0.05, min_rate=5, max_rate=300)


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"max_rate": 400}, {**STORED.as_dict(), "max_rate": 400}),
        ({"enabled": False}, {**STORED.as_dict(), "enabled": False}),
        ({}, STORED.as_dict()),
        (
            {"target_p95_ms": 500, "min_rate": 10},
            {**STORED.as_dict(), "target_p95_ms": 500, "min_rate": 10},
        ),
    ],
)
def test_a_partial_autopilot_update_changes_only_what_it_names(
    update: dict[str, Any], expected: dict[str, Any]
) -> None:
    changes = parse_changes({"autopilot": update}, now_us=0, languages=["en"], autopilot=STORED)
    assert not changes.errors
    assert changes.autopilot is not None and changes.autopilot.as_dict() == expected


def test_the_merged_autopilot_is_validated_whole() -> None:
    # 400 alone is a fine lowest rate, but not with the stored highest rate of 300.
    changes = parse_changes(
        {"autopilot": {"min_rate": 400}}, now_us=0, languages=["en"], autopilot=STORED
    )
    assert "autopilot.min_rate" in changes.errors and changes.autopilot is None


@pytest.mark.parametrize("raw", [None, "", "not json", "[1]", '{"enabled": true, "colour": 1}'])
def test_stored_settings_that_cannot_be_read_fall_back_to_defaults(raw: str | None) -> None:
    pilot = Autopilot.from_json(raw)
    assert pilot.max_rate == Autopilot().max_rate
