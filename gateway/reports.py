"""The reports: the /reports page, the JSON API of the backlog, trend and satisfaction
answers, and the trend as CSV.

Everything here needs the manager role (or admin). The figures come from ``inbox.reports``
and ``inbox.satisfaction_report``; days are those of the workspace's time zone
(``SWITCHBOARD_TIME_ZONE``, UTC by default).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth import csrf_token, current_agent, db, error_response, require_role
from gateway.pages import page_role
from inbox.errors import InboxError, InvalidInput
from inbox.models import Channel, Role, utcnow
from inbox.proactive.quiet_hours import zone_or_none
from inbox.reports import (
    DEFAULT_TREND_DAYS,
    Backlog,
    MAX_TREND_DAYS,
    OLDEST_LIMIT,
    Trend,
    backlog_report,
    parse_trend_range,
    trend_report,
)
from inbox.satisfaction_report import satisfaction_report

blueprint = Blueprint("reports", __name__)

MAX_OLDEST = 100
# The ranges the page offers in its menu; any other is reachable with from and to.
RANGE_CHOICES = (7, 14, 30, 60, 90)
# Per channel kind: the word the page shows after a channel's name, and the text that, when
# the name contains it, makes that word redundant.
KIND_WORDS = {"whatsapp": ("WhatsApp", "whatsapp"), "email": ("Email", "mail")}
CSV_COLUMNS = (
    "date", "created", "resolved", "open_at_end", "first_responses",
    "median_first_response_seconds", "p90_first_response_seconds",
)


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    return error_response(400, error.code, error.message, error.field)


def workspace_zone() -> ZoneInfo:
    """Return the workspace's time zone, or UTC when the configured name is not a valid zone."""
    return zone_or_none(current_app.extensions["switchboard"].config.time_zone) or ZoneInfo("UTC")


def _range(now: datetime) -> tuple[date, date, ZoneInfo]:
    """Return the first and last day that the request's ``days``, ``from`` and ``to`` name, and
    the workspace's zone. Raises ``InvalidInput``."""
    zone = workspace_zone()
    first, last = parse_trend_range(request.args, now.astimezone(zone).date())
    return first, last, zone


def _trend(now: datetime) -> Trend:
    """Return the trend of the request's range. Raises ``InvalidInput``."""
    return trend_report(db(), *_range(now))


# ---- JSON and CSV ---------------------------------------------------------------------------


@blueprint.get("/api/v1/reports/backlog")
@require_role(Role.MANAGER)
def backlog() -> Any:
    return jsonify(backlog_report(db(), utcnow(), _oldest_limit()).to_dict())


def _oldest_limit() -> int:
    value = request.args.get("limit", "").strip()
    if not value:
        return OLDEST_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_OLDEST:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_OLDEST}, not {value!r}.", field="limit")
    return int(value)


@blueprint.get("/api/v1/reports/trend")
@require_role(Role.MANAGER)
def trend() -> Any:
    return jsonify(_trend(utcnow()).to_dict())


@blueprint.get("/api/v1/reports/trend.csv")
@require_role(Role.MANAGER)
def trend_csv() -> Any:
    report = _trend(utcnow())
    return Response(
        trend_to_csv(report),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="switchboard-trend-{report.first_day}-{report.last_day}.csv"',
        },
    )


@blueprint.get("/api/v1/reports/satisfaction")
@require_role(Role.MANAGER)
def satisfaction() -> Any:
    return jsonify(satisfaction_report(db(), *_range(utcnow())).to_dict())


def trend_to_csv(report: Trend) -> str:
    """Return the trend as CSV with a header row; empty times are empty fields."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for day in report.to_dict()["days"]:
        writer.writerow(["" if day[column] is None else day[column] for column in CSV_COLUMNS])
    return output.getvalue()


# ---- The page ---------------------------------------------------------------------------------


@blueprint.get("/reports")
@page_role(Role.MANAGER)
def reports_page() -> Any:
    now = utcnow()
    zone = workspace_zone()
    report = None
    answers = None
    error = None
    try:
        first, last, _ = _range(now)
        report = trend_report(db(), first, last, zone)
        answers = satisfaction_report(db(), first, last, zone)
    except InvalidInput as invalid:
        # The page still loads and shows the error beside the fields, so it returns 200,
        # because browsers log a 400 page as a failed load.
        error = invalid
    today = now.astimezone(zone).date()
    return render_template(
        "reports.html",
        agent=current_agent(),
        csrf_token=csrf_token(),
        backlog=_backlog_for_page(db(), now),
        trend=report,
        satisfaction=answers,
        range_error=range_error_for_page(error, request.args, today) if error else None,
        error_field=error.field if error else None,
        zone=zone.key,
        local_time=lambda value: f"{value.astimezone(zone):%d %b %H:%M}".lstrip("0"),
        today=today,
        args=request.args,
        range_choices=RANGE_CHOICES,
        default_days=DEFAULT_TREND_DAYS,
        max_days=MAX_TREND_DAYS,
    )


def _backlog_for_page(session: Session, now: datetime) -> Backlog:
    """Return the backlog with each channel labelled by ``channel_label``.

    The API's labels add the kind to every name ("WhatsApp (whatsapp)"), which the page would repeat.
    """
    backlog = backlog_report(session, now)
    channel_ids = [row.key for row in backlog.by_channel]
    channels = {
        channel_id: (name, kind)
        for channel_id, name, kind in session.execute(
            select(Channel.id, Channel.name, Channel.kind).where(Channel.id.in_(channel_ids))
        )
    }
    by_channel = [dataclasses.replace(row, label=channel_label(*channels[row.key])) for row in backlog.by_channel]
    return dataclasses.replace(backlog, by_channel=by_channel)


def channel_label(name: str, kind: str) -> str:
    """Return a channel's name, followed by its kind ("Support (Email)") unless the name contains it."""
    kind_name, word = KIND_WORDS.get(kind, (kind, kind))
    if word.casefold() in name.casefold():
        return name
    return f"{name} ({kind_name})"


def range_error_for_page(error: InvalidInput, args: Mapping[str, str], today: date) -> str:
    """Reword a rejected trend range in the terms of the page's form: its fields Last, From and To.

    ``parse_trend_range`` names the API's parameters (``days``, ``from``, ``to``), which the page
    does not show. The error's field names the failed check, and the query's values separate its cases.
    """
    days_text = (args.get("days") or "").strip()
    from_text = (args.get("from") or "").strip()
    to_text = (args.get("to") or "").strip()

    if error.field == "days" and from_text:
        return "Choose either a number of days under Last or a custom range with From, not both."
    if error.field == "days":
        return f"Last must be from 1 to {MAX_TREND_DAYS} days, not {days_text!r}. Choose a number of days in its menu."
    if error.field == "to" and _day_or_none(to_text) is None:
        return f"To must be a date such as 2026-01-31, not {to_text!r}. Pick a day, or leave To empty to end today."
    if error.field == "to":
        return f"To ({to_text}) is after today ({today.isoformat()}). Choose today or an earlier day."
    if error.field == "from":
        first = _day_or_none(from_text)
        last = _day_or_none(to_text) or today
        if first is None:
            return f"From must be a date such as 2026-01-31, not {from_text!r}. Pick the first day of the range."
        if first > last and not to_text:
            return f"From ({first.isoformat()}) is after today ({today.isoformat()}). Choose today or an earlier day."
        if first > last:
            return f"From ({first.isoformat()}) is after To ({last.isoformat()}). Choose a From day on or before the To day."
        span = (last - first).days + 1
        return (
            f"From {first.isoformat()} to {last.isoformat()} is {span} days, more than the {MAX_TREND_DAYS} "
            "a trend shows. Choose a later From day or an earlier To day."
        )
    return error.message


def _day_or_none(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@blueprint.app_template_filter("wait")
def _wait(seconds: float | None) -> str:
    """Return seconds as a short duration for people, rounded to its last unit: 45 s, 12 min,
    3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(round(whole / 3600), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
