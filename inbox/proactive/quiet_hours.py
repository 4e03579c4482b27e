"""Quiet hours: no proactive update reaches a customer at night in their own time zone.

The contact's zone is, in this order: ``Contact.time_zone`` when it is a valid IANA name;
the zone of their phone number (phonenumbers' time zone data, which maps the area code
of North American numbers and the country elsewhere); the workspace's zone. A send that
falls inside the quiet hours is deferred to the moment they end, computed on the local
wall clock with ``zoneinfo``, so the deferral is right on the nights when daylight saving
time starts or ends. Quiet hours may wrap midnight (21:00 to 08:00) or not (13:00 to 14:00).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_time_zones

log = logging.getLogger(__name__)

# The zone name phonenumbers returns for a number without a known zone.
UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True)
class QuietHours:
    """A daily span of local time with no proactive sends, from ``start`` up to ``end``.

    ``start == end`` means no quiet hours at all.
    """

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, local: time) -> bool:
        """Return whether the local wall-clock time ``local`` is inside the quiet hours."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def parse_clock(value: str, name: str) -> time:
    """Return the time of day in ``value`` ("21:00"). Raises ``ValueError`` naming ``name``."""
    try:
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{name}={value!r} is invalid; give a time of day as HH:MM, e.g. 21:00.") from None


def parse_quiet_hours(value: str) -> QuietHours:
    """Return the quiet hours in a setting like "21:00-08:00"; "" or "off" for none.

    Raises ``ValueError`` with the expected form.
    """
    value = value.strip().lower()
    if value in ("", "off", "none"):
        return QuietHours(time(0), time(0))
    start, separator, end = value.partition("-")
    if not separator:
        raise ValueError(f"quiet hours {value!r} are invalid; give them as HH:MM-HH:MM, e.g. 21:00-08:00.")
    return QuietHours(parse_clock(start, "quiet hours start"), parse_clock(end, "quiet hours end"))


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """Return the IANA zone called ``name``, or None for an empty or unknown name."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_for_phone(number: str, workspace_zone: ZoneInfo, now: datetime) -> ZoneInfo | None:
    """Return the zone of an E.164 phone number, or None when the number does not tell.

    A number can map to several zones (a mobile number in a country that spans several).
    Then the workspace's zone wins when it is one of them, any of them serves when they all
    have the same UTC offset at ``now``, and otherwise the number does not tell.
    """
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return None
    names = [name for name in phone_time_zones.time_zones_for_number(parsed) if name != UNKNOWN_ZONE]
    zones = [zone for zone in (zone_or_none(name) for name in names) if zone is not None]
    if not zones:
        return None
    if len(zones) == 1:
        return zones[0]
    if workspace_zone.key in names:
        return workspace_zone
    offsets = {now.astimezone(zone).utcoffset() for zone in zones}
    return zones[0] if len(offsets) == 1 else None


def contact_zone(
    time_zone: str | None, phone_numbers: Iterable[str], workspace_zone: ZoneInfo, now: datetime
) -> ZoneInfo:
    """Return the zone a contact's quiet hours follow (see the module docstring for the order)."""
    return contact_zone_and_source(time_zone, phone_numbers, workspace_zone, now)[0]


def contact_zone_and_source(
    time_zone: str | None, phone_numbers: Iterable[str], workspace_zone: ZoneInfo, now: datetime
) -> tuple[ZoneInfo, str]:
    """Return the zone ``contact_zone`` returns, and where it comes from: "contact" (set by an
    agent), "phone" (a phone number's country) or "workspace"."""
    zone = zone_or_none(time_zone)
    if zone is not None:
        return zone, "contact"
    for number in phone_numbers:
        zone = zone_for_phone(number, workspace_zone, now)
        if zone is not None:
            return zone, "phone"
    return workspace_zone, "workspace"


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """Return when the quiet hours around ``now`` end, in UTC, or None when ``now`` is not quiet.

    ``now`` is timezone-aware, and the end returned is always later than ``now``. The end is
    the first instant after ``now`` at the local time ``quiet.end`` on the right local day,
    so on a night that repeats an hour, a ``now`` in the second pass gets the second
    occurrence of the end time. A local end time that a daylight saving change skips becomes
    the moment of that change, and when the change skips the whole local day, the quiet
    hours end at ``quiet.end`` on the next day.
    """
    local = now.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    end_day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        end_day += timedelta(days=1)  # in the evening part of a span that wraps midnight

    later = None
    for day in (end_day, end_day + timedelta(days=1), end_day + timedelta(days=2)):
        for end in _instants_at(day, quiet.end, zone):
            if end <= now:
                continue
            later = later or end
            # An end moved to a change that skipped the whole day may still be quiet.
            if not quiet.contains(end.astimezone(zone).time().replace(tzinfo=None)):
                return end
    # NOTE: reached only when the ends of three days in a row fall inside the quiet hours,
    # which no zone of the tz database does. The earliest end after ``now`` still serves.
    assert later is not None  # the third day's end is always after ``now``
    return later


def next_allowed_time(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """Return ``now`` when a send is allowed then, else the end of the quiet hours (UTC)."""
    end = quiet_until(now, zone, quiet)
    return now if end is None else end


def _instants_at(day: date, clock: time, zone: ZoneInfo) -> list[datetime]:
    """Return the UTC instants of local time ``clock`` on ``day`` in ``zone``, earliest first.

    A repeated local time gives two instants; a skipped one gives the instant of the change.
    """
    first = _first_instant_at(day, clock, zone)
    wall = datetime.combine(day, clock)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    if second > first and second.astimezone(zone).replace(tzinfo=None) == wall:
        return [first, second]
    return [first]


def _first_instant_at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """Return the first UTC instant whose local time in ``zone`` is ``clock`` on ``day`` or later.

    A repeated local time (autumn) gives its first occurrence (fold 0). A skipped local
    time (spring) gives the instant of the change, the first local time after the gap.
    """
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # ``wall`` falls in a gap. Fold 0 reads it with the offset from before the change and
    # lands after the gap; fold 1 reads it with the later offset and lands before the gap.
    # The change lies between them: bisect on whole seconds for the first second after it.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    offset_before = datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, timezone.utc)
