"""The backlog and trend report: the /reports page, its JSON API and the trend as CSV.

Everything here needs the manager role (or admin). The figures come from ``inbox.reports``;
days are those of the workspace's time zone (``SWITCHBOARD_TIME_ZONE``, UTC by default).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from gateway.auth import csrf_token, current_agent, db, error_response, require_role
from gateway.pages import page_role
from inbox.errors import InboxError, InvalidInput
from inbox.models import Role, utcnow
from inbox.proactive.quiet_hours import zone_or_none
from inbox.reports import (
    DEFAULT_TREND_DAYS,
    MAX_TREND_DAYS,
    OLDEST_LIMIT,
    Trend,
    backlog_report,
    parse_trend_range,
    trend_report,
)

blueprint = Blueprint("reports", __name__)

MAX_OLDEST = 100
# The ranges the page offers in its menu; any other is reachable with from and to.
RANGE_CHOICES = (7, 14, 30, 60, 90)
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


def _trend(now: datetime) -> Trend:
    """Return the trend that the request's ``days``, ``from`` and ``to`` ask for. Raises ``InvalidInput``."""
    zone = workspace_zone()
    first, last = parse_trend_range(request.args, now.astimezone(zone).date())
    return trend_report(db(), first, last, zone)


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
    error = None
    try:
        report = _trend(now)
    except InvalidInput as invalid:
        error = invalid
    status = 400 if error else 200
    return render_template(
        "reports.html",
        agent=current_agent(),
        csrf_token=csrf_token(),
        backlog=backlog_report(db(), now),
        trend=report,
        error=error.message if error else None,
        error_field=error.field if error else None,
        zone=zone.key,
        local_time=lambda value: f"{value.astimezone(zone):%d %b %H:%M}".lstrip("0"),
        today=now.astimezone(zone).date(),
        args=request.args,
        range_choices=RANGE_CHOICES,
        default_days=DEFAULT_TREND_DAYS,
        max_days=MAX_TREND_DAYS,
    ), status


@blueprint.app_template_filter("wait")
def _wait(seconds: float | None) -> str:
    """Return seconds as a short duration for people: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    if seconds is None:
        return "–"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
