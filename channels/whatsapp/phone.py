"""Phone-number normalization to E.164, the form WhatsApp and Twilio address people by."""

from __future__ import annotations

import re

from channels.errors import ParseError

_WHATSAPP_PREFIX = "whatsapp:"

# Separators that people type inside phone numbers and that carry no meaning.
_SEPARATORS = re.compile(r"[\s\-().]")

# E.164 sets a maximum of 15 digits, and country codes never start with 0. The
# 8-digit minimum is a plausibility bound chosen to reject fragments.
# NOTE: a few small numbering plans have shorter international numbers, and those are rejected.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def normalize_phone(value: str) -> str:
    """Normalize a phone number or a Twilio ``whatsapp:`` address to E.164.

    Strips a ``whatsapp:`` prefix, whitespace, dashes, dots and parentheses, and turns
    a leading ``00`` international prefix into ``+``. Returns ``+`` followed by the
    country code and number, 8 to 15 ASCII digits in all.

    Raises ParseError when the result is not a plausible E.164 number, including a
    number without ``+`` or ``00``, because its country cannot be known.
    """
    text = value.strip()
    if text[: len(_WHATSAPP_PREFIX)].lower() == _WHATSAPP_PREFIX:
        text = text[len(_WHATSAPP_PREFIX) :]
    text = _SEPARATORS.sub("", text)
    if text.startswith("00"):
        text = "+" + text[2:]

    if not text.startswith("+"):
        raise ParseError(
            f"invalid phone number {value!r}: it must start with + or 00 and the country code"
        )
    if not _E164.fullmatch(text):
        raise ParseError(
            f"invalid phone number {value!r}: expected + and 8 to 15 digits, not starting with 0"
        )
    return text
