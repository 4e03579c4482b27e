"""How one agent reply becomes the WhatsApp messages that Twilio sends.

Twilio rejects a message body longer than 1,600 characters (error 21617) and carries one
media item per WhatsApp message. A longer reply is split on word boundaries into several
bodies, and each attachment after the first goes out on its own. The parts are sent in
order. Lengths are counted in UTF-16 code units, which is at least the number of
characters however Twilio counts them, so an emoji counts twice. A cut never falls inside
a character or a grapheme cluster (an emoji with a skin tone, a flag, a family joined by
zero-width joiners, a letter with its accents).
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

# Twilio's maximum Body length for one message.
MAX_BODY_UNITS = 1600
# WhatsApp's maximum caption of an image, video or document.
MAX_CAPTION_UNITS = 1024
# The maximum number of parts of one reply, so that a pasted log cannot flood a customer.
MAX_PARTS = 10
# A reply may be this long: ten full parts.
MAX_TEXT_UNITS = MAX_BODY_UNITS * MAX_PARTS

# Media types that WhatsApp accepts through Twilio, and their size limit.
SUPPORTED_MEDIA_TYPES = frozenset({
    "image/jpeg", "image/png",
    "audio/ogg", "audio/mpeg", "audio/amr", "audio/mp4", "audio/aac",
    "video/mp4", "video/3gpp",
    "application/pdf", "text/plain", "text/vcard",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})
MAX_MEDIA_BYTES = 16 * 1024 * 1024

_GRAPHEME = regex.compile(r"\X")
# Longer than any grapheme cluster of real text; only a pile of combining marks is longer.
_CLUSTER_LOOKAHEAD = 64
_WHITESPACE = regex.compile(r"\s+")


@dataclass(frozen=True)
class PlannedPart:
    """One WhatsApp message of a reply: its body, and the index of its attachment or None."""

    text: str
    media_index: int | None = None


def utf16_length(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_BODY_UNITS) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-16 code units, in order.

    Cuts at the last paragraph break, else line break, else space in the second half of
    the allowed length, and strips the whitespace at each cut. Only a word longer than the
    limit is cut inside, at a grapheme-cluster boundary. Returns ``[]`` for blank text.
    """
    if limit < 2:
        raise ValueError(f"limit {limit} is too small to hold a surrogate pair")
    parts = []
    rest = text.strip()
    while utf16_length(rest) > limit:
        cut = _cut_position(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _cut_position(text: str, limit: int) -> int:
    """Return where to cut ``text`` so that the part before it fits ``limit``."""
    end = _fitting_prefix(text, limit)
    window = text[:end]
    if text[end : end + 1].isspace():
        return end  # the whole window is words
    for separator in ("\n\n", "\n"):
        position = window.rfind(separator)
        if position >= end // 2:
            return position
    last_space = None
    for last_space in _WHITESPACE.finditer(window):
        pass
    if last_space is not None:
        return last_space.start()
    return _last_grapheme_boundary(text, end) or end


def _fitting_prefix(text: str, limit: int) -> int:
    """Return the largest index whose prefix is at most ``limit`` UTF-16 code units."""
    units = 0
    for index, character in enumerate(text):
        units += 2 if ord(character) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _last_grapheme_boundary(text: str, end: int) -> int:
    """Return the last grapheme-cluster boundary at or before ``end``, or 0."""
    # The clusters are read a little past ``end``, so that a cluster reaching beyond it is
    # seen whole and not taken to end there.
    boundary = 0
    for match in _GRAPHEME.finditer(text[: end + _CLUSTER_LOOKAHEAD]):
        if match.end() > end:
            break
        boundary = match.end()
    return boundary


def plan_parts(text: str, media_types: list[str], body_limit: int = MAX_BODY_UNITS) -> list[PlannedPart]:
    """Return the WhatsApp messages that send ``text`` and attachments of ``media_types``.

    ``body_limit`` is the provider's maximum text length in UTF-16 code units: Twilio's
    1,600 by default (Meta's Cloud API takes 4,096).

    A text that fits one caption goes with the first attachment, unless that is audio,
    which WhatsApp shows without a caption. Otherwise the text parts come first, and
    each attachment follows on its own.
    """
    chunks = split_text(text, body_limit)
    if not media_types:
        return [PlannedPart(chunk) for chunk in chunks]
    captioned = (
        len(chunks) == 1
        and utf16_length(chunks[0]) <= MAX_CAPTION_UNITS
        and not media_types[0].startswith("audio/")
    )
    if captioned:
        return [PlannedPart(chunks[0], 0)] + [PlannedPart("", index) for index in range(1, len(media_types))]
    return [PlannedPart(chunk) for chunk in chunks] + [PlannedPart("", index) for index in range(len(media_types))]


def check_reply(text: str, media: list[tuple[str, str, int]]) -> None:
    """Check that a reply of ``text`` and ``media`` (file name, type, size) can be sent.

    Raises ValueError with a message for the agent: an empty reply, a text longer than
    ``MAX_TEXT_UNITS``, more than ``MAX_PARTS`` parts, or an attachment whose type
    WhatsApp does not take or that is larger than ``MAX_MEDIA_BYTES``.
    """
    if not text.strip() and not media:
        raise ValueError("The reply is empty.")
    if utf16_length(text) > MAX_TEXT_UNITS:
        raise ValueError(
            f"The reply has {utf16_length(text)} characters (emoji count twice); WhatsApp replies "
            f"allow at most {MAX_TEXT_UNITS}, sent as up to {MAX_PARTS} messages."
        )
    for filename, content_type, size in media:
        if content_type.split(";")[0].strip().lower() not in SUPPORTED_MEDIA_TYPES:
            raise ValueError(
                f"WhatsApp cannot send {filename!r} of type {content_type}: use a JPEG or PNG image, "
                "an MP4 video, an audio file, a PDF or an Office document."
            )
        if size > MAX_MEDIA_BYTES:
            raise ValueError(f"{filename!r} is {size / 1048576:.1f} MB; WhatsApp takes at most 16 MB.")
    planned = plan_parts(text, [content_type for _, content_type, _ in media])
    if len(planned) > MAX_PARTS:
        raise ValueError(f"The reply would go out as {len(planned)} WhatsApp messages; at most {MAX_PARTS} are allowed.")
