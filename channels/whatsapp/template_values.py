"""The text that WhatsApp accepts as a value of a template variable.

WhatsApp rejects a template message when a body parameter contains a new line or tab
character, or more than four consecutive spaces. Twilio and the Cloud API report that only
when the send is attempted, after the reply was queued. So Switchboard checks each value
first. It also rejects the other line breaks of Unicode (U+2028, U+2029, U+0085, vertical
tab, form feed) and every other control character, which a customer cannot see either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from channels.errors import PermanentSendError

MAX_VALUE_LENGTH = 1024
MAX_CONSECUTIVE_SPACES = 4

_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Runs of U+0020 only: other space characters are not known to count towards the limit.
_TOO_MANY_SPACES = re.compile(" {%d,}" % (MAX_CONSECUTIVE_SPACES + 1))


def value_problem(value: str) -> str | None:
    """Return why WhatsApp would reject ``value`` as a template variable, or None when it is valid.

    The reason is a phrase such as "contains a line break", to follow the variable's name.
    """
    if len(value) > MAX_VALUE_LENGTH:
        return f"is longer than {MAX_VALUE_LENGTH} characters"
    for character in value:
        if character in _LINE_BREAKS:
            return f"contains a line break ({_code_point(character)})"
        if character == "\t":
            return "contains a tab"
        if _is_control(character):
            return f"contains the control character {_code_point(character)}"
    spaces = _TOO_MANY_SPACES.search(value)
    if spaces is not None:
        return f"contains {len(spaces.group())} consecutive spaces, more than the {MAX_CONSECUTIVE_SPACES} allowed"
    return None


def check_values(variables: Mapping[str, object]) -> None:
    """Raise ``PermanentSendError`` for the first template variable that WhatsApp would reject.

    The API checks a reply before it is queued. At send time this catches a template that was
    queued without that check, such as by an older version, before a request that fails anyway.
    """
    for name, value in variables.items():
        problem = value_problem(str(value))
        if problem is not None:
            raise PermanentSendError(
                f"template variable {{{{{name}}}}} {problem}, which WhatsApp rejects. "
                "Send the template again with a corrected value"
            )


def clean_value(value: str) -> str:
    """Return ``value`` as WhatsApp accepts it in a template variable.

    Every line break, tab and other control character becomes a space, each run of whitespace
    becomes one space, spaces at the ends are removed, and the result is cut to
    ``MAX_VALUE_LENGTH`` characters. An empty result stays empty.
    """
    visible = "".join(" " if _is_control(character) else character for character in value)
    return " ".join(visible.split())[:MAX_VALUE_LENGTH].rstrip()


def _is_control(character: str) -> bool:
    return character in _LINE_BREAKS or unicodedata.category(character) == "Cc"


def _code_point(character: str) -> str:
    return f"U+{ord(character):04X}"
