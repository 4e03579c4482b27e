"""Health check and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import func, select, text

from inbox.models import OutboxItem, OutboxStatus, RawPayload, PayloadStatus

blueprint = Blueprint("health", __name__)


@blueprint.route("/healthz")
def healthz() -> Any:
    state = current_app.extensions["switchboard"]
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any database failure makes the service unhealthy
        return jsonify({"status": "error", "database": str(error.__class__.__name__)}), 503
    return jsonify({"status": "ok"})


@blueprint.route("/metrics")
def metrics() -> Any:
    state = current_app.extensions["switchboard"]
    with state.session_factory() as session:
        outbox = dict(
            session.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status)).all()
        )
        failed_payloads = session.scalar(
            select(func.count()).select_from(RawPayload).where(RawPayload.status == PayloadStatus.FAILED.value)
        )
    lines = [
        "# HELP switchboard_outbox_items Outbox items by status.",
        "# TYPE switchboard_outbox_items gauge",
    ]
    for status in OutboxStatus:
        lines.append(f'switchboard_outbox_items{{status="{status.value}"}} {outbox.get(status.value, 0)}')
    lines += [
        "# HELP switchboard_failed_payloads Inbound payloads that could not be parsed.",
        "# TYPE switchboard_failed_payloads gauge",
        f"switchboard_failed_payloads {failed_payloads or 0}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
