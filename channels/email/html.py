"""Customer HTML: sanitizing it for the agent's browser and deriving plain text from it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

# Tags whose content is dropped with them, both when sanitizing and when deriving text.
_HIDDEN_TAGS = {"script", "style", "title", "template", "noscript"}
_BLOCK_TAGS = {
    "address", "article", "blockquote", "dd", "div", "dl", "dt", "footer", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "tr", "ul",
}
# cid: keeps inline images working. Relative URLs are denied because they would
# resolve against Switchboard's own origin.
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}


def sanitize_html(markup: str) -> str:
    """Return customer HTML that is safe to show in the agent's browser.

    nh3 keeps basic formatting, links, tables and images, and removes scripts, styles,
    event-handler attributes, ``javascript:`` and relative URLs. Images keep only ``cid:``,
    ``https:`` and ``http:`` sources. The inbox shows a remote image, tracking pixels
    included, only after the agent chooses "Show images", and until then a placeholder
    with its alt text, so an image is never silently dropped.
    """
    return nh3.clean(
        markup,
        clean_content_tags=_HIDDEN_TAGS,
        url_schemes=_URL_SCHEMES,
        url_relative="deny",
        attribute_filter=_filter_attribute,
        link_rel="noopener noreferrer nofollow",
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if value.strip().lower().startswith(("cid:", "https:", "http:")) else None
    return value


def html_to_text(markup: str) -> str:
    """Return the readable text of an HTML body, with line breaks at block ends."""
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    return extractor.text()


class _TextExtractor(HTMLParser):
    """Collect text outside hidden tags; collapse whitespace except inside <pre>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._trailing_newlines = 0
        self._hidden_depth = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden_depth += 1
        elif tag == "body":
            # An unclosed <title> or <style> in the head must not hide the whole body.
            self._hidden_depth = 0
        elif tag == "br":
            self._emit("\n")
        elif tag in _BLOCK_TAGS:
            self._line_break(1)
        if tag == "pre":
            self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            # A blank line after each paragraph, as plain-text mail separates them.
            self._line_break(2 if tag == "p" else 1)
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._hidden_depth:
            return
        if not self._pre_depth:
            data = re.sub(r"\s+", " ", data)
            if not self._chunks or self._trailing_newlines:
                data = data.lstrip()
        self._emit(data)

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self._chunks).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

    def _emit(self, data: str) -> None:
        if not data:
            return
        self._chunks.append(data)
        content = data.rstrip("\n")
        if content:
            self._trailing_newlines = len(data) - len(content)
        else:
            self._trailing_newlines += len(data)

    def _line_break(self, count: int) -> None:
        if self._chunks:
            self._emit("\n" * max(0, count - self._trailing_newlines))
