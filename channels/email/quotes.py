"""Split a plain-text email reply into the new text and the folded rest: quoted history and signature.

The visible reply is one run of whole lines, and everything before and after it is folded, so no
text is lost. A reply written below the quote it answers (bottom posting: an optional attribution
line and ">"-quoted lines first, then unquoted text without further quotes) starts after that
quote. Otherwise the reply starts at the top. The reply ends at the earliest of these:

- an attribution line such as "On <date>, <name> wrote:" in English, German, French, Spanish,
  Dutch, Italian, Portuguese, Polish, Russian and the Scandinavian languages, also when the client
  wrapped it over up to three lines;
- a separator such as "-----Original Message-----" or "---------- Forwarded message ----------",
  in those languages;
- a header block as Outlook and webmail write it: "From:" and at least two of "Sent:", "Date:",
  "To:", "Subject:" and their kin in those languages, on consecutive lines in any order;
- a signature delimiter, "-- " or "--" alone on a line, or a mail client's closing line such as
  "Sent from my iPhone" or "Get Outlook for Android" that ends the text or sits right above
  quoted history;
- a block of ">"-quoted lines that only blank lines follow. Quoted lines with reply text below
  them stay visible when more quotes follow, because that is inline quoting with answers in
  between.

Lines that start with ">" are never checked for attribution lines, separators or headers. When
folding would leave no visible text, nothing folds.
"""

from __future__ import annotations

import re

_QUOTE_PREFIXES = (">",)
# Old Gmail attributions quoted with "|" too; such a block only counts after an attribution line.
_PIPE_PREFIX = "|"

# The longest attribution that a client wraps: "Le 4 janv. 2016 19:03, "Name"" / "<address>" / "a écrit :".
_MAX_ATTRIBUTION_LINES = 3

# A "--" line without the trailing space of the standard delimiter is a signature only when at
# most this many non-blank lines follow it, so that a "--" rule inside a long text stays visible.
_MAX_LOOSE_SIGNATURE_LINES = 15

# A mobile signature is a short line of its own.
_MAX_MOBILE_SIGNATURE_LENGTH = 80

# Each pattern matches an attribution line after its wrapped lines are joined with single spaces.
_ATTRIBUTION_PATTERNS = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^-*\s*On\b.+\bwrote\s*(:|-+)$",  # English; Zoho writes "---- On … wrote ----"
        r"^.+\bschrieb\b.*:$",  # German: "Am … schrieb …:" and "… schrieb am … Uhr:"
        r"^.+\ba\s+écrit\s*:$",  # French: "Le … a écrit :"
        r"^.+\bescribió\s*:$",  # Spanish: "El … escribió:"
        r"^.+\bschreef\b.*:$",  # Dutch: "Op … schreef … het volgende:"
        r"^.+\bha\s+scritto\s*:$",  # Italian: "Il … ha scritto:"
        r"^.+\bescreveu\s*:$",  # Portuguese: "Em … escreveu:"
        r"^.+\bhet volgende geschreven\s*:$",  # Dutch Apple Mail: "Op … heeft … het volgende geschreven:"
        r"^.+\bnapisał(a|\(a\))?\s*:$",  # Polish: "W dniu … napisał(a):"
        r"^.+\bpisze\s*:$",  # Polish Thunderbird: "W dniu … pisze:"
        r"^wiadomość napisana przez\b.+\bw dniu\b.+:$",  # Polish Apple Mail
        r"^.+\s(пишет|написал(а|\(а\))?)\s*:$",  # Russian
        r"^.*\d{4}\s*г\.,?\s+в\s+\d{1,2}:\d{2},\s.*<[^<>\s]+@[^<>\s]+>\s*:$",  # Russian Gmail: "вт, 3 мар. 2026 г. в 10:15, Name <address>:"
        r"^.+\bskrev\b.*:$",  # Norwegian, Danish, Swedish: "Den … skrev …:"
        r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b.*@.*>\s*:$",  # Yandex: "26.06.2014, 14:41, "Name" <address>:"
    )
]

# The first words of attributions that start with the date rather than the sender's name.
_ATTRIBUTION_OPENER = re.compile(r"^(-*\s*on|am|le|el|op|il|em|w dniu|wiadomość napisana|den|\d)\b", re.IGNORECASE)

# Apple Mail's line above a forwarded message, matched without the space some languages put before
# the colon.
_FORWARD_INTRODUCTIONS = {
    "begin forwarded message:",
    "anfang der weitergeleiteten nachricht:",
    "début du message réexpédié:",
    "inicio del mensaje reenviado:",
    "begin doorgestuurd bericht:",
    "inizio messaggio inoltrato:",
    "início da mensagem reencaminhada:",
    "início da mensagem encaminhada:",
    "początek przekazywanej wiadomości:",
    "начало переадресованного сообщения:",
}

# Separator lines, matched after emphasis ("*", "_") and surrounding dashes are removed.
_SEPARATOR_PHRASES = {
    "original message",
    "forwarded message",
    "begin forwarded message:",
    "ursprüngliche nachricht",
    "weitergeleitete nachricht",
    "message d'origine",
    "message d’origine",
    "message original",
    "message transféré",
    "mensaje original",
    "mensaje reenviado",
    "oorspronkelijk bericht",
    "origineel bericht",
    "doorgestuurd bericht",
    "messaggio originale",
    "messaggio inoltrato",
    "mensagem original",
    "mensagem encaminhada",
    "wiadomość oryginalna",
    "oryginalna wiadomość",
    "przekazana wiadomość",
    "исходное сообщение",
    "пересылаемое сообщение",
    "original meddelelse",
    "opprinnelig melding",
    "ursprungligt meddelande",
    "videresendt melding",
    "vidarebefordrat meddelande",
}

_HEADER_LINE = re.compile(r"^\*?\s*([^\W\d_][\w .-]{0,20}?)\s*\*?\s*:\s*\*?")

_FROM_LABELS = {"from", "von", "de", "van", "da", "od", "от"}
_OTHER_HEADER_LABELS = {
    # English
    "sent", "date", "to", "cc", "subject", "reply-to",
    # German
    "gesendet", "datum", "an", "betreff",
    # French, with Thunderbird's "Sujet" and "Pour"
    "envoyé", "à", "objet", "sujet", "pour",
    # Spanish
    "enviado", "enviado el", "fecha", "para", "asunto", "cc",
    # Dutch
    "verzonden", "aan", "onderwerp",
    # Italian
    "inviato", "data", "a", "oggetto", "mittente",
    # Portuguese
    "enviada em", "enviado em", "assunto",
    # Polish
    "wysłano", "do", "temat", "dw",
    # Russian
    "отправлено", "дата", "кому", "тема", "копия",
}
# A header block has a "From:" line and at least this many other header lines, in any order.
_MIN_OTHER_HEADERS = 2
# Lines after "From:" that are searched for the other headers; values can wrap onto a second line.
_HEADER_BLOCK_LINES = 8

# The closing lines that mail clients, mostly on phones, add below a reply.
_MOBILE_SIGNATURE = re.compile(
    r"^(sent from|sent via|sent with|sent using|get outlook for|download outlook for"
    r"|von meinem|gesendet von|gesendet mit|diese nachricht wurde von|outlook für \w+ (herunterladen|beziehen)"
    r"|envoyé de|envoyé depuis|envoyé à partir de|obtenir outlook pour"
    r"|enviado desde|enviado de|enviado do|enviado a partir d[eo]|obtener outlook para|obter o outlook para"
    r"|verzonden met|verstuurd vanaf|verzonden vanaf|verzonden vanuit|verstuurd met|outlook voor \w+ downloaden"
    r"|inviato da|inviato dal|scarica outlook per|ottieni outlook per"
    r"|wysłane z|wysłano z|pobierz (aplikację )?outlook"
    r"|отправлено с|отправлено из|получить outlook для|sendt fra|skickat från)\b",
    re.IGNORECASE,
)

# "2013/7/20 Name <address>": an attribution of old Gmail versions, without any verb.
_DATED_ADDRESS_LINE = re.compile(r"^\d{4}[/-]\d{1,2}[/-]\d{1,2}\b.*@")

# A digit or "@": every attribution names a date or an address.
_DATE_OR_ADDRESS = re.compile(r"\d|@")

# A line of underscores or dashes that Outlook and others draw above the quoted header block.
_RULE_LINE = re.compile(r"^[_\-=*]{5,}$")


def split_reply(text: str) -> tuple[str, str]:
    """Split an email's plain text into its visible reply and the folded quote and signature.

    Return ``(visible, folded)`` where, for two offsets ``a <= b`` at the start of lines,
    ``visible == text[a:b].strip()`` and ``folded`` is ``text[:a].strip()`` and
    ``text[b:].strip()``, joined by a blank line when both are non-empty. So the two parts hold
    all of the text except whitespace at the cuts and at both ends. ``folded`` is empty when
    nothing was recognised, and also when folding would leave ``visible`` empty, in which case
    ``visible`` is the whole text, stripped.
    """
    start, end = reply_span(text)
    visible = text[start:end].strip()
    if not visible:
        return text.strip(), ""
    folded = [part for part in (text[:start].strip(), text[end:].strip()) if part]
    return visible, "\n\n".join(folded)


def visible_reply(text: str | None) -> str | None:
    """Return the reply that ``split_reply`` finds when something folds, else None.

    None means the whole text is to be shown: it is empty, nothing folds, or it is all quote,
    such as a forward with nothing written above it.
    """
    if not text:
        return None
    visible, folded = split_reply(text)
    if not folded or not visible:
        return None
    return visible


def reply_span(text: str) -> tuple[int, int]:
    """Return the offsets ``(start, end)`` of the visible reply in ``text``, at line starts.

    The span can hold only whitespace, when the whole text is quoted history or a signature.
    """
    lines = text.splitlines(keepends=True)
    first, last = _reply_lines(lines)
    start = sum(len(line) for line in lines[:first])
    end = start + sum(len(line) for line in lines[first:last])
    return start, end


def _reply_lines(lines: list[str]) -> tuple[int, int]:
    """Return the index of the first visible line and of the first folded line after it."""
    stripped = [line.strip() for line in lines]
    first = _answer_below_quote(stripped)
    if first:
        last = first + _find_cut(lines[first:])
        # Quotes between the answers make it an inline reply, which stays whole above the cut.
        if not any(_is_quoted(line) for line in stripped[first:last]):
            return first, last
    return 0, _find_cut(lines)


def _answer_below_quote(stripped: list[str]) -> int:
    """Return the first line of text below an opening quote, or 0 when the text opens otherwise.

    The opening quote is ">"-quoted lines, after an attribution line when there is one.
    """
    position = next((index for index, line in enumerate(stripped) if line), len(stripped))
    if position == len(stripped):
        return 0
    if not _is_quoted(stripped[position]):
        if _attribution_start(stripped, position) != position:
            return 0
        position += 1
        while position < len(stripped) and not _is_quoted(stripped[position]):
            if stripped[position] and not stripped[position].endswith(":"):
                return 0  # only the rest of a wrapped attribution or blank lines come before the quote
            position += 1

    while position < len(stripped) and (not stripped[position] or _is_quoted(stripped[position])):
        position += 1
    return position if position < len(stripped) else 0


def _find_cut(lines: list[str]) -> int:
    """Return the index of the first folded line, or len(lines) when nothing folds."""
    stripped = [line.strip() for line in lines]
    cut = len(lines)

    # The first marker in unquoted text ends the reply.
    for index, line in enumerate(stripped):
        if not line or _is_quoted(line):
            continue
        attribution = _attribution_start(stripped, index)
        if attribution is not None:
            if _answers_follow_quote(stripped, index):
                continue
            cut = attribution
            break
        if _is_signature_delimiter(lines[index]) or _starts_tail_unattributed(stripped, index):
            cut = index
            break

    # A quoted block at the end of what remains folds too, with the attribution line above it.
    cut = _trailing_quote_start(stripped, cut)

    # Rules drawn above a header block fold with it.
    while cut < len(lines) and cut > 0 and (not stripped[cut - 1] or _RULE_LINE.match(stripped[cut - 1])):
        cut -= 1
    return cut


def _is_quoted(line: str) -> bool:
    return line.startswith(_QUOTE_PREFIXES)


def _starts_tail(stripped: list[str], index: int) -> bool:
    return _attribution_start(stripped, index) is not None or _starts_tail_unattributed(stripped, index)


def _starts_tail_unattributed(stripped: list[str], index: int) -> bool:
    """Tell whether line ``index`` starts a tail other than an attribution."""
    line = stripped[index]
    if _is_separator(line) or _is_header_block(stripped, index):
        return True
    if line == "--":
        remaining = sum(1 for later in stripped[index + 1:] if later)
        return remaining <= _MAX_LOOSE_SIGNATURE_LINES
    if _is_mobile_signature(stripped, index):
        return True
    return False


def _is_signature_delimiter(raw_line: str) -> bool:
    return raw_line.rstrip("\r\n") == "-- "


def _is_separator(line: str) -> bool:
    phrase = line.strip("*_ ").strip("-").strip().lower()
    if re.sub(r"\s+:$", ":", phrase) in _FORWARD_INTRODUCTIONS:
        return True
    # A separator has its phrase between dashes: "-----Original Message-----".
    return line.strip("*_ ").startswith("--") and phrase in _SEPARATOR_PHRASES


def _answers_follow_quote(stripped: list[str], index: int) -> bool:
    """Tell whether the attribution at ``index`` leads a quote with unquoted reply text below it.

    Bottom posting and inline answers look like that, and their attribution stays visible.
    """
    position = index + 1
    while position < len(stripped) and not _is_quoted(stripped[position]):
        if stripped[position].endswith(":") or not stripped[position]:
            position += 1  # the rest of a wrapped attribution, or blank lines
            continue
        return False
    seen_quote = False
    while position < len(stripped):
        line = stripped[position]
        if line and not _is_quoted(line):
            return seen_quote and not _starts_tail(stripped, position)
        seen_quote = seen_quote or bool(line)
        position += 1
    return False


def _attribution_start(stripped: list[str], index: int) -> int | None:
    """Return the first line of an attribution that starts at or wraps into line ``index``."""
    window = []
    for line in stripped[index:index + _MAX_ATTRIBUTION_LINES]:
        if not line or _is_quoted(line):
            break
        window.append(line)
    # Most lines of a reply have neither, so this ends the search for most of them.
    if not any(_DATE_OR_ADDRESS.search(line) for line in window):
        return None
    for end in range(index, index + len(window)):
        if not _is_attribution_text(" ".join(stripped[index:end + 1])):
            continue
        # The lines above an attribution can end a paragraph of the reply with no blank line
        # between, so a later line that opens an attribution ("On", "Am", "Le", ...) starts it.
        for start in range(index, end + 1):
            joined = " ".join(stripped[start:end + 1])
            if _ATTRIBUTION_OPENER.match(joined) and _is_attribution_text(joined):
                return start
        # NOTE: an attribution that begins with the sender's name ("Anna <a@example.com> schrieb:")
        # has no opener, so a reply line right above it without a blank line folds with it.
        return index
    return None


def _is_attribution_text(text: str) -> bool:
    # A date or an address is what tells an attribution from a sentence such as "Anna wrote:".
    if not _DATE_OR_ADDRESS.search(text):
        return False
    return any(pattern.match(text) for pattern in _ATTRIBUTION_PATTERNS)


def _header_label(line: str) -> str | None:
    match = _HEADER_LINE.match(line)
    return match.group(1).strip().lower() if match else None


def _is_header_block(stripped: list[str], index: int) -> bool:
    """Tell whether a block of quoted-message headers with a "From:" line starts at ``index``."""
    if _header_label(stripped[index]) not in _FROM_LABELS | _OTHER_HEADER_LABELS:
        return False
    labels = set()
    for line in stripped[index:index + 1 + _HEADER_BLOCK_LINES]:
        if not line:
            break
        label = _header_label(line)
        if label in _FROM_LABELS or label in _OTHER_HEADER_LABELS:
            labels.add(label)
    has_sender = bool(labels & _FROM_LABELS)
    return has_sender and len(labels - _FROM_LABELS) >= _MIN_OTHER_HEADERS


def _is_mobile_signature(stripped: list[str], index: int) -> bool:
    line = stripped[index]
    if len(line) > _MAX_MOBILE_SIGNATURE_LENGTH or not _MOBILE_SIGNATURE.match(line):
        return False
    # "Sent from our warehouse on Monday." in the middle of a reply is no signature. Outlook's
    # apps draw a rule between their closing line and the quoted headers.
    following = next(
        (later for later in range(index + 1, len(stripped)) if stripped[later] and not _RULE_LINE.match(stripped[later])),
        None,
    )
    if following is None or _is_quoted(stripped[following]):
        return True
    return _starts_tail(stripped, following)


def _trailing_quote_start(stripped: list[str], end: int) -> int:
    """Return where a quoted block that ends the lines before ``end`` starts, else ``end``."""
    for prefixes in (_QUOTE_PREFIXES + (_PIPE_PREFIX,), _QUOTE_PREFIXES):
        start = end
        quoted_lines = 0
        uses_pipe = False
        while start > 0:
            line = stripped[start - 1]
            if line and not line.startswith(prefixes):
                break
            if line:
                quoted_lines += 1
                uses_pipe = uses_pipe or line.startswith(_PIPE_PREFIX)
            start -= 1
        if quoted_lines == 0:
            return end

        while start < end and not stripped[start]:
            start += 1
        attribution = start - 1
        while attribution >= 0 and not stripped[attribution]:
            attribution -= 1
        has_attribution = attribution >= 0 and _DATED_ADDRESS_LINE.match(stripped[attribution])
        if uses_pipe and not has_attribution:
            continue
        return attribution if has_attribution else start
    return end
