"""Quiet hours in the contact's zone, across the daylight saving changes of 2026."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from inbox.proactive.quiet_hours import (
    QuietHours,
    contact_zone,
    next_allowed_time,
    parse_quiet_hours,
    quiet_until,
    zone_for_phone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
NIGHT = QuietHours(time(21, 0), time(8, 0))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        # Berlin, spring forward on 29 March 2026: 23:00 CET, then 08:00 CEST = 06:00 UTC.
        (utc(2026, 3, 28, 22, 0), BERLIN, utc(2026, 3, 29, 6, 0)),
        # Berlin, fall back on 25 October 2026: 23:00 CEST, then 08:00 CET = 07:00 UTC.
        (utc(2026, 10, 24, 21, 0), BERLIN, utc(2026, 10, 25, 7, 0)),
        # New York, spring forward on 8 March 2026: 22:00 EST, then 08:00 EDT = 12:00 UTC.
        (utc(2026, 3, 8, 3, 0), NEW_YORK, utc(2026, 3, 8, 12, 0)),
        # New York, fall back on 1 November 2026: 01:30 EDT (the first one), then 08:00 EST = 13:00 UTC.
        (utc(2026, 11, 1, 5, 30), NEW_YORK, utc(2026, 11, 1, 13, 0)),
        # New York, 01:30 EST (the repeated hour) on the same night.
        (utc(2026, 11, 1, 6, 30), NEW_YORK, utc(2026, 11, 1, 13, 0)),
    ],
)
def test_night_send_deferred_across_dst(now, zone, expected):
    assert quiet_until(now, zone, NIGHT) == expected
    assert next_allowed_time(now, zone, NIGHT) == expected


def test_morning_part_of_the_night_ends_same_day():
    # 05:00 CEST in Berlin on 29 March is after the change: quiet until 08:00 CEST.
    assert quiet_until(utc(2026, 3, 29, 3, 0), BERLIN, NIGHT) == utc(2026, 3, 29, 6, 0)


def test_daytime_send_goes_at_once():
    now = utc(2026, 3, 29, 12, 0)

    assert quiet_until(now, BERLIN, NIGHT) is None
    assert next_allowed_time(now, BERLIN, NIGHT) == now


def test_quiet_start_is_inclusive_and_end_exclusive():
    # 21:00 and 08:00 CET in Berlin in January.
    assert quiet_until(utc(2026, 1, 10, 20, 0), BERLIN, NIGHT) == utc(2026, 1, 11, 7, 0)
    assert quiet_until(utc(2026, 1, 10, 7, 0), BERLIN, NIGHT) is None


def test_end_in_skipped_hour_becomes_the_change():
    # Quiet until 02:30, which 29 March 2026 skips in Berlin: the send goes at 03:00 CEST.
    quiet = QuietHours(time(1, 0), time(2, 30))

    assert quiet_until(utc(2026, 3, 29, 0, 30), BERLIN, quiet) == utc(2026, 3, 29, 1, 0)


def test_end_in_repeated_hour_takes_first():
    # Quiet until 01:30, which 1 November 2026 has twice in New York: the first (EDT) one.
    quiet = QuietHours(time(0, 0), time(1, 30))

    assert quiet_until(utc(2026, 11, 1, 4, 10), NEW_YORK, quiet) == utc(2026, 11, 1, 5, 30)


def test_span_within_one_day():
    lunch = QuietHours(time(12, 0), time(13, 0))

    assert quiet_until(utc(2026, 6, 1, 12, 30), UTC, lunch) == utc(2026, 6, 1, 13, 0)
    assert quiet_until(utc(2026, 6, 1, 11, 59), UTC, lunch) is None


def test_off_setting_never_quiet():
    off = parse_quiet_hours("off")

    assert quiet_until(utc(2026, 6, 1, 23, 0), UTC, off) is None


def test_parse_rejects_bad_form():
    assert parse_quiet_hours("22:15-07:45") == QuietHours(time(22, 15), time(7, 45))
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_quiet_hours("22")
    with pytest.raises(ValueError, match="HH:MM"):
        parse_quiet_hours("25:00-07:00")


def test_contact_zone_prefers_own_setting():
    now = utc(2026, 6, 1, 12, 0)

    assert contact_zone("America/New_York", ["+4930123456"], UTC, now) == NEW_YORK


def test_contact_zone_from_phone_number():
    now = utc(2026, 6, 1, 12, 0)

    assert contact_zone(None, ["+4930123456"], UTC, now) == BERLIN
    assert contact_zone("Not/AZone", ["+12125550100"], UTC, now) == NEW_YORK


def test_contact_zone_falls_back_to_workspace():
    now = utc(2026, 6, 1, 12, 0)

    # 555 numbers have no zone, and a contact may have no phone at all.
    assert contact_zone(None, ["+15551230000"], BERLIN, now) == BERLIN
    assert contact_zone(None, [], BERLIN, now) == BERLIN


def test_phone_with_several_zones():
    now = utc(2026, 6, 1, 12, 0)
    australia = "+61412345678"

    # The workspace's zone wins when the number could be there.
    assert zone_for_phone(australia, ZoneInfo("Australia/Perth"), now) == ZoneInfo("Australia/Perth")
    # Zones with different offsets and none of them the workspace's: the number does not tell.
    assert zone_for_phone(australia, BERLIN, now) is None
    # The United Kingdom's mobile numbers map to zones that share one offset.
    assert zone_for_phone("+447911123456", BERLIN, now) is not None


def test_second_pass_of_repeated_hour_ends_after_now():
    # 01:10 EST, the second 01:10 of 1 November 2026 in New York: the first 01:30 (EDT,
    # 05:30 UTC) is past, so the quiet hours end at 01:30 EST.
    quiet = QuietHours(time(21, 0), time(1, 30))
    now = utc(2026, 11, 1, 6, 10)

    end = quiet_until(now, NEW_YORK, quiet)

    assert end == utc(2026, 11, 1, 6, 30)
    assert end > now
    assert next_allowed_time(now, NEW_YORK, quiet) == end


def test_first_pass_of_repeated_hour_takes_first_end():
    # 01:10 EDT, the first pass on the same night: the quiet hours end at 01:30 EDT.
    quiet = QuietHours(time(21, 0), time(1, 30))

    assert quiet_until(utc(2026, 11, 1, 5, 10), NEW_YORK, quiet) == utc(2026, 11, 1, 5, 30)


def test_skipped_local_day_ends_next_morning():
    # Samoa skipped 30 December 2011: 23:59:59 on the 29th (UTC-10) was followed by 00:00
    # on the 31st (UTC+14). Quiet from 21:00 on the 29th, the next 08:00 is on the 31st.
    apia = ZoneInfo("Pacific/Apia")
    now = utc(2011, 12, 30, 8, 0)  # 22:00 on 29 December, local time

    end = quiet_until(now, apia, NIGHT)

    assert end is not None
    assert end.astimezone(apia) == datetime(2011, 12, 31, 8, 0, tzinfo=apia)
    assert end == utc(2011, 12, 30, 18, 0)


@pytest.mark.parametrize("zone_name", ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia"])
@pytest.mark.parametrize("span", ["21:00-01:30", "00:30-02:30", "01:00-01:45", "22:00-00:00"])
def test_end_always_after_now(zone_name, span):
    # Every ten minutes across the year's two changes, and Samoa's skipped day.
    zone = ZoneInfo(zone_name)
    quiet = parse_quiet_hours(span)
    starts = [utc(2026, 3, 7, 0, 0), utc(2026, 10, 2, 0, 0), utc(2026, 10, 24, 0, 0), utc(2011, 12, 29, 0, 0)]
    for start in starts:
        for step in range(3 * 24 * 6):
            now = start + timedelta(minutes=10 * step)
            end = quiet_until(now, zone, quiet)
            if end is None:
                continue
            assert end > now, f"{zone_name} {span}: end {end} is not after {now}"
            assert not quiet.contains(end.astimezone(zone).time().replace(tzinfo=None)), f"{zone_name} {span}: {end} is quiet"
