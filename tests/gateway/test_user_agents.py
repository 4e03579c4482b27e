"""The readable browser names on the Account page, from real-looking User-Agent headers."""

from __future__ import annotations

import time

import pytest

from gateway.user_agents import BrowserSummary, parse_user_agent, summarize_user_agent

# (header, expected summary). The headers follow the shapes current browsers send.
HEADERS = [
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
     "Chrome 156 on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36",
     "Chrome 139 on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36",
     "Chrome 139 on macOS"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36",
     "Chrome 138 on ChromeOS"),
    ("Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36",
     "Chrome 140 on Android 14"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/139.0.7258.76 Mobile/15E148 Safari/604.1",
     "Chrome 139 on iPhone"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
     "Headless Chrome 156 on Linux"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chromium/120.0.6099.224 "
     "Chrome/120.0.6099.224 Safari/537.36",
     "Chromium 120 on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0", "Firefox 140 on Windows"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Linux"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.6; rv:141.0) Gecko/20100101 Firefox/141.0", "Firefox 141 on macOS"),
    ("Mozilla/5.0 (Android 15; Mobile; rv:140.0) Gecko/140.0 Firefox/140.0", "Firefox 140 on Android 15"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "FxiOS/141.0 Mobile/15E148 Safari/605.1.15",
     "Firefox 141 on iPhone"),
    ("Mozilla/5.0 (X11; FreeBSD amd64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on FreeBSD"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.5 Mobile/15E148 Safari/604.1",
     "Safari 18 on iPhone"),
    ("Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.7 Mobile/15E148 Safari/604.1",
     "Safari 17 on iPad"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15",
     "Safari 18 on macOS"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36 "
     "Edg/139.0.3405.86",
     "Edge 139 on Windows"),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/139.0.0.0 Mobile Safari/537.36 "
     "EdgA/139.0.0.0",
     "Edge 139 on Android 10"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 "
     "Edge/18.19045",
     "Edge 18 on Windows"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36 "
     "OPR/122.0.0.0",
     "Opera 122 on Windows"),
    ("Opera/9.80 (X11; Linux i686; U; ru) Presto/2.8.131 Version/11.11", "Opera 11 on Linux"),
    ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36",
     "Samsung Internet 28 on Android 14"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36 "
     "Vivaldi/7.5.3735.62",
     "Vivaldi 7 on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/136.0.0.0 "
     "YaBrowser/25.6.0.0 Safari/537.36",
     "Yandex Browser 25 on Windows"),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko", "Internet Explorer 11 on Windows 7"),
    ("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)", "Internet Explorer 8 on Windows XP"),
    ("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
     "Edge 15 on Windows Phone"),
    ("curl/8.14.1", "curl 8"),
    ("Wget/1.25.0", "Wget 1"),
    ("python-requests/2.32.4", "Python Requests 2"),
    ("python-httpx/0.28.1", "HTTPX 0"),
    ("PostmanRuntime/7.44.1", "Postman 7"),
]


@pytest.mark.parametrize(("header", "expected"), HEADERS, ids=[expected for _, expected in HEADERS])
def test_common_browsers_get_readable_names(header, expected):
    assert summarize_user_agent(header) == expected


@pytest.mark.parametrize("header", [None, "", "   ", "\t\n"])
def test_missing_header_is_unknown_browser(header):
    assert parse_user_agent(header) == BrowserSummary()
    assert summarize_user_agent(header) == "Unknown browser"


@pytest.mark.parametrize(("header", "expected"), [
    ("Mozilla/5.0", "Unknown browser"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Unknown browser"),
    ("Mozilla/5.0 (X11; Linux x86_64) SomethingNew/1.0", "Unknown browser on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0) Chrome/", "Chrome on Windows"),
    ("<script>alert(1)</script>", "Unknown browser"),
    ("Firefox/140.0\x00\x1b[31m", "Firefox 140"),
    ("Mozilla/5.0 (iPhone) Firefox/9999999999999999999999", "Firefox 9999999999999999999999 on iPhone"),
    ("Chrome/156.0 🚀 Linux", "Chrome 156 on Linux"),
])
def test_odd_headers_get_safe_names(header, expected):
    assert summarize_user_agent(header) == expected


def test_names_come_from_whole_tokens():
    # "Firefoxy" and "Windowsill" contain a browser's and a system's name but are other words.
    assert summarize_user_agent("Firefoxy/3 (Windowsill)") == "Unknown browser"


def test_very_long_header_reads_only_its_start():
    started = time.perf_counter()
    summary = summarize_user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 " + "; x" * 100_000)
    # Tokens that start a pattern again and again, without the part that would end it.
    hostile = [
        summarize_user_agent("Mozilla/5.0 " + "(" * 100_000 + "AppleWebKit/ " * 10_000),
        summarize_user_agent("Trident/7.0; " * 10_000),
        summarize_user_agent("Opera " * 10_000),
    ]
    elapsed = time.perf_counter() - started

    assert summary == "Chrome 156 on Linux"
    assert hostile == ["Unknown browser", "Unknown browser", "Opera"]
    assert elapsed < 1.0


def test_token_past_read_limit_is_ignored():
    assert summarize_user_agent(" " * 2000 + "Firefox/140.0 (Windows NT 10.0)") == "Unknown browser"


def test_summary_parts_are_separate():
    summary = parse_user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0")

    assert summary.browser == "Firefox"
    assert summary.version == "140"
    assert summary.system == "Windows"
