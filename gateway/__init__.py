"""The running service: app factory, HTTP and Socket.IO surface, workers and CLI."""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map
from flask_socketio import SocketIO
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Config, workspace_settings_from
from inbox.db import make_engine, make_session_factory
from inbox.storage import AttachmentStore, use_attachment_store
from inbox.workspace import use_workspace_settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_ID = 2**63 - 1

log = logging.getLogger(__name__)


@dataclass
class Switchboard:
    """The objects one app instance owns, kept in ``app.extensions["switchboard"]``."""

    config: Config
    engine: Engine
    session_factory: sessionmaker[Session]
    socketio: SocketIO
    # Set after a reply is committed, so an in-process dispatcher sends it at once.
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)
    # Set when a webhook stored a message with media to download.
    media_wakeup: threading.Event = field(default_factory=threading.Event)


def create_app(config: Config | None = None) -> Flask:
    """Build the Flask app with its database, Socket.IO server, routes and event publisher."""
    config = config or Config.from_env()
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        SESSION_COOKIE_NAME="switchboard_session",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=config.session_lifetime),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )

    if config.trusted_proxies:
        # Webhook signatures cover the URL the provider called, which only the proxy saw.
        hops = config.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]

    engine = make_engine(config.database_url)
    from gateway.realtime import socketio_options

    socketio = SocketIO(
        app,
        async_mode="threading",
        message_queue=config.redis_url,
        manage_session=False,
        # Same-origin only: the browser's Origin must match the Host it connected to.
        cors_allowed_origins=None,
        **socketio_options(config.redis_url),
    )
    state = Switchboard(config, engine, make_session_factory(engine), socketio)
    attachments_dir = config.attachments_dir or Path(config.instance_dir) / "attachments"
    use_attachment_store(state.session_factory, AttachmentStore(attachments_dir))
    use_workspace_settings(state.session_factory, workspace_settings_from(config))
    app.extensions["switchboard"] = state

    from gateway import admin_api, admin_pages, api, auth, channel_settings, health, input_checks, pages, realtime, webhooks
    from gateway import proactive_api, proactive_pages
    from gateway import proactive_log, reports

    app.url_map.converters["id"] = IdConverter
    app.before_request(api.allow_reply_files)
    auth.init_app(app)
    # After the sign-in guard, so an unauthenticated request gets 401 whatever it contains.
    input_checks.init_app(app)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(admin_api.blueprint)
    app.register_blueprint(admin_pages.blueprint)
    app.register_blueprint(channel_settings.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(proactive_api.blueprint)
    app.register_blueprint(proactive_pages.blueprint)
    app.register_blueprint(proactive_log.blueprint)
    app.register_blueprint(reports.blueprint)
    realtime.init_app(app, state)
    api.init_app(app)
    # After api.init_app, because the page errors replace its 404 handler for pages.
    pages.init_error_pages(app)
    return app


class IdConverter(IntegerConverter):
    """A database id in a URL: 1 to 2**63 - 1, so a larger number is a 404, not an overflow."""

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=MAX_ID)


def freeze_start_up_objects() -> None:
    """Exempt every object alive now from the cyclic garbage collector's full collections.

    A serving process contains some 140,000 long-lived objects after start-up (modules, the
    SQLAlchemy mappers, Flask's routing). Python's full collection walks all of them, which
    paused one request in about a hundred by 40 to 80 ms. Frozen objects are still freed by
    reference counting; only cycles among them stay until the process ends. Call it once,
    when the process has finished starting.
    """
    gc.collect()
    gc.freeze()


def get_state(app: Flask) -> Switchboard:
    return app.extensions["switchboard"]
