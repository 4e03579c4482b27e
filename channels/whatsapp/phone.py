"""Phone-number normalization to E.164, the form WhatsApp and Twilio address people by.

Parsing goes through phonenumbers (Google's libphonenumber), which knows the country
codes and drops a national trunk prefix written inside an international number, as in
``+49 (0)151 23456789``. The result is checked for E.164's shape only, not against the
numbering plan of its country: the plans change faster than the library's metadata, and
a message from a real customer must not be rejected because a new range is missing there.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

from channels.errors import ParseError

_WHATSAPP_PREFIX = "whatsapp:"

# What people type inside phone numbers besides digits. Letters are rejected, although
# phonenumbers would read them as keypad digits, because no WhatsApp address has them.
_ALLOWED = re.compile(r"[0-9+\s\-().]+")

# E.164 sets a maximum of 15 digits, and country codes never start with 0. The
# 8-digit minimum is a plausibility bound chosen to reject fragments.
# NOTE: a few small numbering plans have shorter international numbers, and those are rejected.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


# A webhook's number is normalized several times on its way in (its From and WaId fields, its
# contact lookup), and phonenumbers takes most of the parsing time, so results are kept.
@functools.lru_cache(maxsize=4096)
def normalize_phone(value: str) -> str:
    """Normalize a phone number or a Twilio ``whatsapp:`` address to E.164.

    Accepts a ``whatsapp:`` prefix, spaces, dashes, dots and parentheses, a leading
    ``00`` international prefix in place of ``+``, and a trunk prefix in parentheses after
    the country code. Returns ``+`` followed by the country code and number, 8 to 15 ASCII
    digits in all, so ``whatsapp:+4915123456789``, ``+49 151 23456789`` and
    ``004915123456789`` all return ``+4915123456789``.

    Raises ParseError when the result is not a plausible E.164 number, including a
    number without ``+`` or ``00``, because its country cannot be known.
    """
    text = value.strip()
    if text[: len(_WHATSAPP_PREFIX)].lower() == _WHATSAPP_PREFIX:
        text = text[len(_WHATSAPP_PREFIX) :].strip()
    if text.startswith("00"):
        text = "+" + text[2:]

    if not text.startswith("+"):
        raise ParseError(
            f"invalid phone number {value!r}: it must start with + or 00 and the country code"
        )
    if not _ALLOWED.fullmatch(text) or text.count("+") != 1:
        raise ParseError(
            f"invalid phone number {value!r}: only digits, a leading + and separators are allowed"
        )
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as error:
        raise ParseError(f"invalid phone number {value!r}: {error}") from None

    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not _E164.fullmatch(e164):
        raise ParseError(
            f"invalid phone number {value!r}: expected + and 8 to 15 digits, not starting with 0"
        )
    return e164


def normalize_wa_id(value: str) -> str:
    """Normalize Twilio's ``WaId`` field, the WhatsApp ID: the E.164 digits without ``+``.

    Returns the E.164 number. Raises ParseError when it is not a plausible one.
    """
    digits = value.strip()
    if not digits.isascii() or not digits.isdigit():
        raise ParseError(f"invalid WaId {value!r}: expected the digits of an E.164 number")
    return normalize_phone("+" + digits)
