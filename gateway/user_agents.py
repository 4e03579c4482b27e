"""A short, readable name for a browser from its User-Agent header, such as "Firefox 140 on Windows".

The Account page lists sign-ins by this name and keeps the full header one click away. The
rules cover the browsers and systems people sign in with, plus common command-line clients.
Browsers copy each other's tokens (every Chromium browser sends "Chrome" and "Safari", and
Chrome sends "Safari" too), so the more specific tokens are tried first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNKNOWN_BROWSER = "Unknown browser"
# Real headers are a few hundred characters, and sign-ins store at most 300. Reading no
# further keeps the work per header small whatever a client sends.
MAX_READ_LENGTH = 1000

# (name, pattern): the first pattern that matches names the browser. Group 1, when the
# pattern has one, is the major version.
BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("Edge", r"\bEdg(?:e|A|iOS)?/(\d+)?"),
        ("Opera", r"\b(?:OPR|OPT|OPiOS)/(\d+)?"),
        ("Opera", r"\bOpera\b(?:.*\bVersion/(\d+))?"),
        ("Samsung Internet", r"\bSamsungBrowser/(\d+)?"),
        ("Yandex Browser", r"\bYaBrowser/(\d+)?"),
        ("Vivaldi", r"\bVivaldi/(\d+)?"),
        ("Firefox", r"\b(?:Firefox|FxiOS)/(\d+)?"),
        ("Chrome", r"\bCriOS/(\d+)?"),
        ("Headless Chrome", r"\bHeadlessChrome/(\d+)?"),
        ("Chromium", r"\bChromium/(\d+)?"),
        ("Chrome", r"\bChrome/(\d+)?"),
        ("Internet Explorer", r"\bMSIE (\d+)"),
        ("Internet Explorer", r"\bTrident/\d+(?:\.\d+)?;.*?\brv:(\d+)"),
        # Safari's own version is in "Version/", because its "Safari/" token is the WebKit build.
        ("Safari", r"\bVersion/(\d+)[^ ]* (?:Mobile/\S+ )?Safari/"),
        ("Safari", r"\bAppleWebKit/.*\bSafari/"),
        ("curl", r"^curl/(\d+)?"),
        ("Wget", r"^Wget/(\d+)?"),
        ("Python Requests", r"^python-requests/(\d+)?"),
        ("HTTPX", r"^python-httpx/(\d+)?"),
        ("Postman", r"^PostmanRuntime/(\d+)?"),
    )
)

# (name, pattern): the first match names the operating system or device. Group 1, when
# present, is a version to show after the name.
SYSTEMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("iPhone", r"\biPhone\b"),
        ("iPad", r"\biPad\b"),
        ("iPod touch", r"\biPod\b"),
        ("Windows Phone", r"\bWindows Phone\b"),
        ("Android", r"\bAndroid(?: (\d+))?"),
        ("ChromeOS", r"\bCrOS\b"),
        ("Windows", r"\bWindows NT (\d+\.\d+)"),
        ("Windows", r"\bWindows\b"),
        # iPads from iPadOS 13 on send the Mac header by default, so they show as macOS.
        ("macOS", r"\bMac OS X\b|\bMacintosh\b"),
        ("FreeBSD", r"\bFreeBSD\b"),
        ("OpenBSD", r"\bOpenBSD\b"),
        ("Linux", r"\bLinux\b|\bX11\b"),
    )
)

# Windows NT versions that name one Windows release. NT 10.0 is both Windows 10 and 11,
# which the header does not tell apart, so it shows as plain "Windows".
WINDOWS_RELEASES = {"5.1": "XP", "5.2": "XP", "6.0": "Vista", "6.1": "7", "6.2": "8", "6.3": "8.1"}


@dataclass(frozen=True)
class BrowserSummary:
    """The browser, major version and operating system named by a User-Agent header, each None when unknown."""

    browser: str | None = None
    version: str | None = None
    system: str | None = None

    @property
    def label(self) -> str:
        """The summary as one phrase: "Chrome 156 on Linux", "Safari on iPhone", "Unknown browser"."""
        name = self.browser or UNKNOWN_BROWSER
        if self.browser and self.version:
            name = f"{name} {self.version}"
        return f"{name} on {self.system}" if self.system else name


def parse_user_agent(header: str | None) -> BrowserSummary:
    """Return the browser, its major version and the operating system named by ``header``.

    An empty, unusual or very long header gives a summary with unknown parts, not an error.
    """
    text = (header or "")[:MAX_READ_LENGTH]
    if not text.strip():
        return BrowserSummary()
    browser, version = _browser(text)
    return BrowserSummary(browser, version, _system(text))


def summarize_user_agent(header: str | None) -> str:
    """Return ``parse_user_agent(header).label``, for templates."""
    return parse_user_agent(header).label


def _browser(text: str) -> tuple[str | None, str | None]:
    for name, pattern in BROWSERS:
        match = pattern.search(text)
        if match:
            version = match.group(1) if pattern.groups else None
            return name, version or None
    return None, None


def _system(text: str) -> str | None:
    for name, pattern in SYSTEMS:
        match = pattern.search(text)
        if not match:
            continue
        version = match.group(1) if pattern.groups else None
        if name == "Windows" and version:
            release = WINDOWS_RELEASES.get(version)
            return f"Windows {release}" if release else name
        if name == "Android" and version:
            return f"Android {version}"
        return name
    return None
