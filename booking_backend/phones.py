"""Phone numbers as people type them, turned into one canonical E.164 form.

The canonical form is the key of a person's booking, so "+420 601 123 456" and
"00420601123456" must be the same number, or one person could book twice.
"""

from __future__ import annotations

import re

from booking_backend.errors import Refusal

MIN_DIGITS = 8
MAX_DIGITS = 15  # E.164
# Longer input is garbage, not a number; refuse it before looking closer.
MAX_INPUT_LENGTH = 40
_SEPARATORS = re.compile(r"[ \t\u00a0-]+")


def normalise_phone(raw: str) -> str:
    """Return "+<digits>" or raise Refusal("invalid_phone") with a message saying why."""
    text = raw.strip()
    if not text:
        raise Refusal("invalid_phone", "Enter your mobile phone number.")
    if len(text) > MAX_INPUT_LENGTH:
        raise Refusal("invalid_phone", "That is too long for a phone number.")
    compact = _SEPARATORS.sub("", text)
    if compact.startswith("00"):  # the international prefix used across Europe
        compact = "+" + compact[2:]
    if not compact.startswith("+"):
        raise Refusal(
            "invalid_phone",
            "Start with + and your country code, for example +420 601 123 456.",
        )
    digits = compact[1:]
    if not digits.isascii() or not digits.isdigit():
        raise Refusal(
            "invalid_phone", "Use only digits and spaces after the +, e.g. +420 601 123 456."
        )
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise Refusal(
            "invalid_phone",
            f"A phone number has {MIN_DIGITS} to {MAX_DIGITS} digits after the +; "
            f"this one has {len(digits)}.",
        )
    if digits[0] == "0":
        raise Refusal("invalid_phone", "A country code never starts with 0.")
    return "+" + digits


def mask_phone(phone: str) -> str:
    """ "+420601123456" -> "+420******456": enough to recognise, not enough to reuse."""
    return phone[:4] + "*" * max(0, len(phone) - 7) + phone[-3:]
