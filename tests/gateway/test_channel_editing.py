"""Editing channels on the channels page and the command line: settings and secrets, names,
disabling and enabling, and what a disabled channel does with webhooks, mail and replies."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from gateway.cli import main
from gateway.simulate import build_message_form
from gateway.workers import MailboxReader, Workers
from inbox.agents import create_agent
from inbox.channel_config import add_channel, set_channel_active
from inbox.models import AuditEvent, Channel, Conversation, Message, OutboxItem, RawPayload
from inbox.replies import create_reply
from tests.conftest import AGENT_PASSWORD, TWILIO_AUTH_TOKEN, login
from tests.support.meta_server import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_APP_SECRET,
    DEFAULT_PHONE_NUMBER_ID,
    change,
    contact,
    encode,
    entry,
    signature,
    status,
    text_message,
    webhook_body,
)
from tests.support.whatsapp import ingest_webhooks

IMAP_PASSWORD = "imap-secret-1234"
SMTP_PASSWORD = "smtp-secret-5678"
META_VERIFY_TOKEN = "verify-token-for-tests"
EMAIL_SETTINGS = {
    "imap_host": "imap.shop.example",
    "imap_port": 993,
    "imap_username": "help@shop.example",
    "imap_password": IMAP_PASSWORD,
    "smtp_host": "smtp.shop.example",
    "smtp_port": 587,
    "smtp_username": "help@shop.example",
    "smtp_password": SMTP_PASSWORD,
    "smtp_security": "starttls",
}


# --- helpers ---------------------------------------------------------------------------------


def _sign_in(app, state, role: str = "admin"):
    email = f"{role}-editor@example.com"
    with state.session_factory() as session:
        created = create_agent(session, email, f"{role.title()} Editor", AGENT_PASSWORD, role)
        session.commit()
    client = app.test_client()
    return client, login(client, email), created


def _add(state, kind: str, name: str, address: str, settings: dict) -> int:
    with state.session_factory() as session:
        channel = add_channel(session, kind, name, address, settings)
        session.commit()
        return channel.id


@pytest.fixture
def cli(database_url, tmp_path):
    env = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def help_desk(state) -> int:
    return _add(state, "email", "Help desk", "help@shop.example", EMAIL_SETTINGS)


@pytest.fixture
def meta_channel(state) -> int:
    return _add(state, "whatsapp", "WhatsApp Cloud", "+15550783881", {
        "provider": "meta", "phone_number_id": DEFAULT_PHONE_NUMBER_ID, "verify_token": META_VERIFY_TOKEN,
        "app_secret": DEFAULT_APP_SECRET, "access_token": DEFAULT_ACCESS_TOKEN,
    })


def _form_values(html: str, channel_id: int) -> dict[str, str]:
    """Return the values the settings form of ``channel_id`` shows, by input name."""
    form = re.search(rf'<form class="settings-form" method="post" action="/channels/{channel_id}/settings".*?</form>',
                     html, re.S)
    assert form is not None, "the page has no settings form for the channel"
    values = {}
    for tag in re.findall(r"<input [^>]*>", form.group(0)):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None or name.group(1) == "csrf_token":
            continue
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                values[name.group(1)] = "on"
            continue
        value = re.search(r'value="([^"]*)"', tag)
        values[name.group(1)] = value.group(1) if value else ""
    for name, options in re.findall(r'<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>', form.group(0), re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        values[name] = chosen.group(1) if chosen else ""
    return values


def _post_settings(client, csrf: str, channel_id: int, **changes: str):
    """Post the channel's settings form as the page shows it, with ``changes`` applied."""
    values = _form_values(client.get("/channels").get_data(as_text=True), channel_id)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return client.post(f"/channels/{channel_id}/settings", data={"csrf_token": csrf, **values})


def _settings(state, channel_id: int) -> dict:
    with state.session_factory() as session:
        return dict(session.get(Channel, channel_id).settings)


def _channel(state, channel_id: int) -> Channel:
    with state.session_factory() as session:
        channel = session.get(Channel, channel_id)
        session.expunge(channel)
        return channel


def _audit_rows(state, action: str) -> list[AuditEvent]:
    with state.session_factory() as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))
        for row in rows:
            session.expunge(row)
        return rows


def _count(state, model) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


# --- the settings form -----------------------------------------------------------------------


def test_form_never_shows_secrets(app, state, help_desk, meta_channel, whatsapp_channel):
    client, _, _ = _sign_in(app, state)

    html = client.get("/channels").get_data(as_text=True)

    for secret in (IMAP_PASSWORD, SMTP_PASSWORD, DEFAULT_APP_SECRET, DEFAULT_ACCESS_TOKEN, META_VERIFY_TOKEN,
                   TWILIO_AUTH_TOKEN):
        assert secret not in html
    email = _form_values(html, help_desk)
    assert email["imap_host"] == "imap.shop.example"
    assert email["imap_port"] == "993"
    assert email["imap_password"] == ""
    assert email["imap_ssl"] == "on"
    assert email["smtp_security"] == "starttls"
    assert email["address"] == "help@shop.example"
    assert "account_sid" in _form_values(html, whatsapp_channel.id)
    meta = _form_values(html, meta_channel)
    assert meta["phone_number_id"] == DEFAULT_PHONE_NUMBER_ID
    assert meta["app_secret"] == ""
    assert 'autocomplete="new-password"' in html


def test_saving_settings_keeps_empty_secrets(app, state, help_desk):
    client, csrf, _ = _sign_in(app, state)

    saved = _post_settings(client, csrf, help_desk, imap_host="mail.shop.example", imap_port="143", imap_ssl=None,
                           smtp_security="ssl", smtp_port="465")
    page = client.get("/channels").get_data(as_text=True)

    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(f"/channels#channel-{help_desk}-settings")
    settings = _settings(state, help_desk)
    assert settings["imap_host"] == "mail.shop.example"
    assert settings["imap_port"] == 143
    assert settings["imap_ssl"] is False
    assert settings["smtp_security"] == "ssl"
    assert settings["smtp_port"] == 465
    assert settings["imap_password"] == IMAP_PASSWORD
    assert settings["smtp_password"] == SMTP_PASSWORD
    assert "Saved the settings of Help desk: IMAP host, IMAP port, IMAP TLS, SMTP port and SMTP security." in page


def test_replace_box_changes_a_secret(app, state, help_desk):
    client, csrf, _ = _sign_in(app, state)

    saved = _post_settings(client, csrf, help_desk, imap_password="a new password", replace_imap_password="on")

    assert saved.status_code == 303
    settings = _settings(state, help_desk)
    assert settings["imap_password"] == "a new password"
    assert settings["smtp_password"] == SMTP_PASSWORD


def test_secret_without_replace_box_is_rejected(app, state, help_desk):
    client, csrf, _ = _sign_in(app, state)

    rejected = _post_settings(client, csrf, help_desk, imap_host="other.shop.example", imap_password="typed")
    html = rejected.get_data(as_text=True)

    assert rejected.status_code == 400
    assert _settings(state, help_desk) == {**EMAIL_SETTINGS, "imap_folders": ["INBOX"], "sent_folder": None}
    assert (f'id="channel-{help_desk}-imap_password-error">Tick “Replace” to change the stored IMAP password, '
            "or clear the field to keep it.") in html
    # The form shows what was typed again, except the secret.
    assert _form_values(html, help_desk)["imap_host"] == "other.shop.example"
    assert "typed" not in html


def test_replacing_required_secret_with_nothing_is_rejected(app, state, help_desk):
    client, csrf, _ = _sign_in(app, state)

    rejected = _post_settings(client, csrf, help_desk, imap_password="", replace_imap_password="on")
    html = rejected.get_data(as_text=True)

    assert rejected.status_code == 400
    assert f'id="channel-{help_desk}-imap_password-error">The IMAP password is missing.' in html
    assert _settings(state, help_desk)["imap_password"] == IMAP_PASSWORD


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"imap_port": "99999"}, "imap_port", "The IMAP port must be a port number from 1 to 65535, not 99999."),
        ({"imap_port": "９９３"}, "imap_port", "The setting imap_port must be a whole number"),
        ({"smtp_port": "abc"}, "smtp_port", "The setting smtp_port must be a whole number, not &#39;abc&#39;."),
        ({"imap_host": ""}, "imap_host", "The IMAP host is missing."),
        ({"smtp_security": "tls"}, "smtp_security", "The SMTP security must be starttls, ssl or none."),
        ({"address": "not-an-address"}, "address", "&#39;not-an-address&#39; is not a valid email address."),
        ({"address": "  "}, "address", "The email address is missing."),
        ({"max_message_bytes": "0"}, "max_message_bytes", "The max_message_bytes setting must be a positive number"),
    ],
)
def test_invalid_value_shown_beside_field(app, state, help_desk, changes, field, message):
    client, csrf, _ = _sign_in(app, state)

    rejected = _post_settings(client, csrf, help_desk, **{"smtp_host": "changed.shop.example", **changes})
    html = rejected.get_data(as_text=True)

    assert rejected.status_code == 400
    assert f'id="channel-{help_desk}-{field}-error">{message}' in html
    assert re.search(rf'id="channel-{help_desk}-{field}"[^>]*aria-invalid="true"', html, re.S)
    assert f'id="channel-{help_desk}-settings" open' in html
    assert _settings(state, help_desk) == {**EMAIL_SETTINGS, "imap_folders": ["INBOX"], "sent_folder": None}
    assert _channel(state, help_desk).address == "help@shop.example"
    assert _audit_rows(state, "channel.changed") == []


def test_address_and_limits_stored_normalized(app, state, help_desk):
    client, csrf, _ = _sign_in(app, state)

    saved = _post_settings(client, csrf, help_desk, address=" Support@Shop.Example ", reopen_window_days="14",
                           max_attachment_bytes="5000000")
    cleared = _post_settings(client, csrf, help_desk, reopen_window_days="")

    assert saved.status_code == 303
    assert cleared.status_code == 303
    assert _channel(state, help_desk).address == "support@shop.example"
    settings = _settings(state, help_desk)
    assert settings["max_attachment_bytes"] == 5_000_000
    assert "reopen_window_days" not in settings


def test_oauth_channel_form_has_no_passwords(app, state):
    channel_id = _add(state, "email", "Workspace mail", "help@workspace.example", {
        **{key: value for key, value in EMAIL_SETTINGS.items() if "password" not in key},
        "smtp_username": "", "auth": "oauth2", "oauth_provider": "google", "oauth_client_id": "client-1",
        "oauth_client_secret": "oauth-client-secret", "oauth_refresh_token": "oauth-refresh-token",
        "oauth_token_url": "https://oauth2.googleapis.com/token", "oauth_scopes": "https://mail.google.com/",
    })
    client, csrf, _ = _sign_in(app, state)

    html = client.get("/channels").get_data(as_text=True)
    values = _form_values(html, channel_id)
    saved = _post_settings(client, csrf, channel_id, oauth_client_id="client-2")

    assert "imap_password" not in values
    assert "smtp_password" not in values
    assert values["oauth_client_id"] == "client-1"
    assert values["oauth_client_secret"] == ""
    assert "oauth-client-secret" not in html
    assert "oauth-refresh-token" not in html
    assert saved.status_code == 303
    settings = _settings(state, channel_id)
    assert settings["oauth_client_id"] == "client-2"
    assert settings["oauth_client_secret"] == "oauth-client-secret"


def test_address_taken_by_another_channel_conflicts(app, state, help_desk):
    _add(state, "email", "Sales", "sales@shop.example", EMAIL_SETTINGS)
    client, csrf, _ = _sign_in(app, state)

    rejected = _post_settings(client, csrf, help_desk, address="sales@shop.example")

    assert rejected.status_code == 409
    assert "already uses sales@shop.example" in rejected.get_data(as_text=True)
    assert _channel(state, help_desk).address == "help@shop.example"


def test_audit_row_names_secrets_without_values(app, state, help_desk):
    client, csrf, admin = _sign_in(app, state)

    _post_settings(client, csrf, help_desk, address="support@shop.example", smtp_host="relay.shop.example",
                   smtp_password="brand-new-smtp-secret", replace_smtp_password="on")

    (row,) = _audit_rows(state, "channel.changed")
    assert row.actor_id == admin.id
    assert row.target_id == help_desk
    assert row.details == {
        "address": {"from": "help@shop.example", "to": "support@shop.example"},
        "smtp_host": {"from": "smtp.shop.example", "to": "relay.shop.example"},
        "smtp_password": {"changed": True},
    }
    assert "brand-new-smtp-secret" not in json.dumps(row.details)


def test_unchanged_form_saves_nothing(app, state, help_desk):
    client, csrf, _ = _sign_in(app, state)

    saved = _post_settings(client, csrf, help_desk)
    page = client.get("/channels").get_data(as_text=True)

    assert saved.status_code == 303
    assert _audit_rows(state, "channel.changed") == []
    assert "Nothing changed: the settings of Help desk are as they were." in page


def test_twilio_settings_and_number(app, state, whatsapp_channel):
    client, csrf, _ = _sign_in(app, state)
    new_sid = "AC" + "1" * 32

    saved = _post_settings(client, csrf, whatsapp_channel.id, account_sid=new_sid, address="+1 (415) 523-9999",
                           auth_token="a-new-auth-token", replace_auth_token="on")
    bad_sid = _post_settings(client, csrf, whatsapp_channel.id, account_sid="AC123")
    bad_number = _post_settings(client, csrf, whatsapp_channel.id, address="4155239999")
    no_number = _post_settings(client, csrf, whatsapp_channel.id, address="")

    assert saved.status_code == 303
    settings = _settings(state, whatsapp_channel.id)
    assert settings["account_sid"] == new_sid
    assert settings["auth_token"] == "a-new-auth-token"
    assert _channel(state, whatsapp_channel.id).address == "+14155239999"
    assert bad_sid.status_code == 400
    assert (f'id="channel-{whatsapp_channel.id}-account_sid-error">The Twilio Account SID must be AC followed by '
            "32 hexadecimal digits.") in bad_sid.get_data(as_text=True)
    assert bad_number.status_code == 400
    assert f'id="channel-{whatsapp_channel.id}-address-error">The sender number is invalid' in bad_number.get_data(as_text=True)
    assert no_number.status_code == 400
    assert f'id="channel-{whatsapp_channel.id}-address-error">The sender number is missing.' in no_number.get_data(as_text=True)


def test_new_auth_token_checks_next_webhook(app, state, whatsapp_channel):
    client, csrf, _ = _sign_in(app, state)
    webhooks = app.test_client()
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    form = build_message_form(whatsapp_channel, "+15551230000", "before", None)
    assert _post_twilio(webhooks, path, form, TWILIO_AUTH_TOKEN).status_code == 200

    _post_settings(client, csrf, whatsapp_channel.id, auth_token="rotated-auth-token", replace_auth_token="on")
    old = _post_twilio(webhooks, path, build_message_form(whatsapp_channel, "+15551230000", "old", None),
                       TWILIO_AUTH_TOKEN)
    new = _post_twilio(webhooks, path, build_message_form(whatsapp_channel, "+15551230000", "new", None),
                       "rotated-auth-token")

    assert old.status_code == 403
    assert new.status_code == 200


def test_meta_settings_validated_like_cli(app, state, meta_channel, cli):
    client, csrf, _ = _sign_in(app, state)

    bad_version = _post_settings(client, csrf, meta_channel, api_version="23")
    saved = _post_settings(client, csrf, meta_channel, waba_id="102290129340398", api_version="v24.0",
                           access_token="new-access-token", replace_access_token="on")

    assert bad_version.status_code == 400
    assert "The Graph API version &#39;23&#39; must look like v23.0." in bad_version.get_data(as_text=True)
    assert saved.status_code == 303
    settings = _settings(state, meta_channel)
    assert settings["waba_id"] == "102290129340398"
    assert settings["api_version"] == "v24.0"
    assert settings["access_token"] == "new-access-token"
    assert settings["app_secret"] == DEFAULT_APP_SECRET
    from_cli = cli("channel", "set", str(meta_channel), "api_version=23")
    assert from_cli.exit_code == 1
    assert "The Graph API version '23' must look like v23.0." in from_cli.output


def test_meta_phone_number_id_taken_conflicts(app, state, meta_channel):
    _add(state, "whatsapp", "Second number", "+15550783882", {
        "provider": "meta", "phone_number_id": "222333444", "verify_token": "v",
        "app_secret": "s", "access_token": "t",
    })
    client, csrf, _ = _sign_in(app, state)

    rejected = _post_settings(client, csrf, meta_channel, phone_number_id="222333444")

    assert rejected.status_code == 409
    assert f'id="channel-{meta_channel}-phone_number_id-error">Channel' in rejected.get_data(as_text=True)
    assert _settings(state, meta_channel)["phone_number_id"] == DEFAULT_PHONE_NUMBER_ID


def test_forms_need_csrf_token(app, state, help_desk):
    client, _, _ = _sign_in(app, state)

    for path, data in ((f"/channels/{help_desk}/settings", {"imap_host": "evil.example"}),
                       (f"/channels/{help_desk}/name", {"name": "Evil"}),
                       (f"/channels/{help_desk}/disable", {})):
        response = client.post(path, data=data)
        assert response.status_code == 403, path

    channel = _channel(state, help_desk)
    assert channel.settings["imap_host"] == "imap.shop.example"
    assert channel.name == "Help desk"
    assert channel.is_active


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_forms_need_admin_role(app, state, help_desk, role):
    client, csrf, _ = _sign_in(app, state, role)

    for path, data in ((f"/channels/{help_desk}/settings", {"imap_host": "evil.example"}),
                       (f"/channels/{help_desk}/name", {"name": "Evil"}),
                       (f"/channels/{help_desk}/disable", {}),
                       (f"/channels/{help_desk}/enable", {})):
        response = client.post(path, data={"csrf_token": csrf, **data})
        assert response.status_code == 403, path

    channel = _channel(state, help_desk)
    assert channel.settings["imap_host"] == "imap.shop.example"
    assert channel.name == "Help desk"
    assert channel.is_active


def test_unknown_channel_not_found(app, state):
    client, csrf, _ = _sign_in(app, state)

    for path in ("/channels/999/settings", "/channels/999/name", "/channels/999/disable", "/channels/999/enable"):
        response = client.post(path, data={"csrf_token": csrf, "name": "X"})
        assert response.status_code == 404, path
        assert '<p class="notice notice--error" role="alert">Not saved: Channel 999 not found.</p>' in (
            response.get_data(as_text=True)
        ), path


# --- renaming --------------------------------------------------------------------------------


def test_rename_saves_and_audits(app, state, help_desk):
    client, csrf, admin = _sign_in(app, state)

    saved = client.post(f"/channels/{help_desk}/name", data={"csrf_token": csrf, "name": "  Customer care  "})
    page = client.get("/channels").get_data(as_text=True)

    assert saved.status_code == 303
    assert _channel(state, help_desk).name == "Customer care"
    assert "Saved: the channel Help desk is now called Customer care." in page
    (row,) = _audit_rows(state, "channel.changed")
    assert row.actor_id == admin.id
    assert row.details == {"name": {"from": "Help desk", "to": "Customer care"}}


def test_rename_allows_a_name_in_use(app, state, help_desk, whatsapp_channel):
    client, csrf, _ = _sign_in(app, state)

    saved = client.post(f"/channels/{help_desk}/name", data={"csrf_token": csrf, "name": whatsapp_channel.name})

    assert saved.status_code == 303
    assert _channel(state, help_desk).name == whatsapp_channel.name


@pytest.mark.parametrize(
    ("name", "message"),
    [("   ", "The channel name is empty."),
     ("x" * 201, "The channel name has 201 characters; the maximum is 200."),
     ("Help\ndesk", "The channel name contains a control character.")],
)
def test_rename_rejects_bad_name(app, state, help_desk, name, message):
    client, csrf, _ = _sign_in(app, state)

    rejected = client.post(f"/channels/{help_desk}/name", data={"csrf_token": csrf, "name": name})

    assert rejected.status_code == 400
    assert f'id="channel-{help_desk}-name-error">Not saved: {message}' in rejected.get_data(as_text=True)
    assert _channel(state, help_desk).name == "Help desk"


def test_cli_rename(state, help_desk, cli):
    renamed = cli("channel", "rename", str(help_desk), "Customer care")
    empty = cli("channel", "rename", str(help_desk), " ")
    missing = cli("channel", "rename", "999", "X")

    assert renamed.exit_code == 0, renamed.output
    assert "Channel 1 (Help desk) is now called Customer care." in renamed.output
    assert _channel(state, help_desk).name == "Customer care"
    assert empty.exit_code == 1
    assert "The channel name is empty." in empty.output
    assert missing.exit_code == 1
    assert "Channel 999 not found." in missing.output
    (row,) = _audit_rows(state, "channel.changed")
    assert row.actor_id is None
    assert row.details == {"name": {"from": "Help desk", "to": "Customer care"}}


def test_cli_set_address_normalizes_number(state, whatsapp_channel, cli):
    result = cli("channel", "set", str(whatsapp_channel.id), "address=+1 415 523 0000")

    assert result.exit_code == 0, result.output
    assert "address = +14155230000" in result.output
    assert _channel(state, whatsapp_channel.id).address == "+14155230000"
    (row,) = _audit_rows(state, "channel.changed")
    assert row.details == {"address": {"from": "+14155238886", "to": "+14155230000"}}


# --- disabling and enabling ------------------------------------------------------------------


def test_disable_and_enable_from_page(app, state, help_desk):
    client, csrf, admin = _sign_in(app, state)

    disabled = client.post(f"/channels/{help_desk}/disable", data={"csrf_token": csrf})
    disabled_page = client.get("/channels").get_data(as_text=True)
    again = client.post(f"/channels/{help_desk}/disable", data={"csrf_token": csrf})
    enabled = client.post(f"/channels/{help_desk}/enable", data={"csrf_token": csrf})
    enabled_page = client.get("/channels").get_data(as_text=True)

    assert disabled.status_code == 303
    assert "Help desk is disabled: it receives nothing, and replies through it are rejected." in disabled_page
    assert f'id="channel-{help_desk}-disabled"' in disabled_page
    assert f'action="/channels/{help_desk}/enable"' in disabled_page
    assert again.status_code == 303
    assert enabled.status_code == 303
    assert _channel(state, help_desk).is_active
    assert "Help desk is enabled: it receives and sends again." in enabled_page
    assert f'action="/channels/{help_desk}/disable"' in enabled_page
    # Disabling a disabled channel again is no change, so it has no row of its own.
    assert [row.actor_id for row in _audit_rows(state, "channel.disabled")] == [admin.id]
    assert [row.actor_id for row in _audit_rows(state, "channel.enabled")] == [admin.id]


def _post_twilio(client, path: str, form: dict[str, str], token: str = TWILIO_AUTH_TOKEN):
    signed = RequestValidator(token).compute_signature("http://localhost" + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signed})


def _disable(state, channel_id: int) -> None:
    with state.session_factory() as session:
        set_channel_active(session, channel_id, False)
        session.commit()


def test_disabled_twilio_channel_rejects_messages(app, state, whatsapp_channel):
    client, csrf, _ = _sign_in(app, state)
    webhooks = app.test_client()
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    # A webhook before fills this process's cache of the channel, which disabling clears.
    assert _post_twilio(webhooks, path, build_message_form(whatsapp_channel, "+15551230000", "hi", None)).status_code == 200
    ingest_webhooks(state)
    client.post(f"/channels/{whatsapp_channel.id}/disable", data={"csrf_token": csrf})

    rejected = _post_twilio(webhooks, path, build_message_form(whatsapp_channel, "+15551230000", "later", None))
    unsigned = webhooks.post(path, data=build_message_form(whatsapp_channel, "+15551230000", "x", None))

    assert rejected.status_code == 503
    assert rejected.get_json()["error"]["code"] == "channel_disabled"
    assert unsigned.status_code == 403
    assert _count(state, RawPayload) == 1
    assert _count(state, Message) == 1

    client.post(f"/channels/{whatsapp_channel.id}/enable", data={"csrf_token": csrf})
    accepted = _post_twilio(webhooks, path, build_message_form(whatsapp_channel, "+15551230000", "back", None))
    assert accepted.status_code == 200
    assert ingest_webhooks(state) == 1


def test_disabled_twilio_channel_records_statuses(app, state, whatsapp_channel, agent):
    webhooks = app.test_client()
    _post_twilio(webhooks, f"/webhooks/twilio/{whatsapp_channel.id}/messages",
                 build_message_form(whatsapp_channel, "+15551230000", "hi", None))
    ingest_webhooks(state)
    _disable(state, whatsapp_channel.id)
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}

    response = _post_twilio(webhooks, f"/webhooks/twilio/{whatsapp_channel.id}/status", form)

    assert response.status_code == 204
    assert _count(state, RawPayload) == 2


def _meta_post(client, channel_id: int, document: dict):
    body = encode(document)
    return client.post(f"/webhooks/meta/{channel_id}", data=body, content_type="application/json",
                       headers={"X-Hub-Signature-256": signature(DEFAULT_APP_SECRET, body)})


def _meta_message(text: str) -> dict:
    return webhook_body(entry(change(messages=[text_message("15551230000", text)],
                                     contacts=[contact("15551230000", "Grace")])))


def test_disabled_meta_channel_rejects_messages(app, state, meta_channel):
    webhooks = app.test_client()
    _disable(state, meta_channel)

    rejected = _meta_post(webhooks, meta_channel, _meta_message("Are you there?"))
    statuses = _meta_post(webhooks, meta_channel, webhook_body(entry(change(
        statuses=[status("wamid.unknown", "delivered", "15551230000")]))))
    handshake = webhooks.get(f"/webhooks/meta/{meta_channel}", query_string={
        "hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN, "hub.challenge": "42"})

    assert rejected.status_code == 503
    assert rejected.get_json()["error"]["code"] == "channel_disabled"
    assert statuses.status_code == 200
    assert handshake.status_code == 200
    assert _count(state, Message) == 0
    assert _count(state, RawPayload) == 0

    with state.session_factory() as session:
        set_channel_active(session, meta_channel, True)
        session.commit()
    retried = _meta_post(webhooks, meta_channel, _meta_message("Are you there?"))
    assert retried.status_code == 200
    assert _count(state, Message) == 1


def test_meta_events_for_other_disabled_channel_rejected(app, state, meta_channel):
    # A second number of the same Meta app: its events may arrive at the first channel's URL.
    second = _add(state, "whatsapp", "Second number", "+15550783882", {
        "provider": "meta", "phone_number_id": "222333444", "verify_token": META_VERIFY_TOKEN,
        "app_secret": DEFAULT_APP_SECRET, "access_token": DEFAULT_ACCESS_TOKEN,
    })
    _disable(state, second)
    document = webhook_body(entry(change(
        "222333444", messages=[text_message("15551230000", "To the second number")],
        contacts=[contact("15551230000", "Grace")], display_number="15550783882",
    )))

    response = _meta_post(app.test_client(), meta_channel, document)

    assert response.status_code == 503
    assert _count(state, Message) == 0


# --- a disabled mailbox ----------------------------------------------------------------------


def _mail(subject: str) -> bytes:
    return (
        "From: Grace <grace@customer.example>\r\nTo: support@shop.example\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '-')}@customer.example>\r\n"
        "Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n\r\nHello\r\n"
    ).encode()


def _wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_disabled_mailbox_is_not_read(state, mailbox, email_channel, monkeypatch):
    import gateway.workers

    # A short IDLE slice, so that the reader looks at its channel again soon after mail arrives.
    monkeypatch.setattr(gateway.workers, "IDLE_SLICE_SECONDS", 0.5)
    stop = threading.Event()
    thread = threading.Thread(target=MailboxReader(state, email_channel.id, stop).run, daemon=True)
    mailbox.append(_mail("first mail"))
    thread.start()
    try:
        assert _wait_for(lambda: _count(state, Message) == 1)
        _disable(state, email_channel.id)
        mailbox.append(_mail("while disabled"))
        thread.join(20)
        assert not thread.is_alive(), "the reader kept running on a disabled channel"
        assert _count(state, Message) == 1

        workers = Workers(state)
        workers.refresh_mailboxes()
        assert not [name for name in workers.threads if name.startswith("imap-")]
        assert _count(state, Message) == 1
    finally:
        stop.set()
        thread.join(15)

    # Enabled again, the channel imports what waited in the mailbox.
    with state.session_factory() as session:
        set_channel_active(session, email_channel.id, True)
        session.commit()
    workers = Workers(state)
    workers.refresh_mailboxes()
    try:
        assert _wait_for(lambda: _count(state, Message) == 2)
    finally:
        workers.stop_event.set()
        for reader in workers.threads.values():
            reader.join(15)


# --- replies on a disabled channel -----------------------------------------------------------


def test_reply_on_disabled_channel_is_rejected(app, state, whatsapp_channel, agent, api_token):
    webhooks = app.test_client()
    _post_twilio(webhooks, f"/webhooks/twilio/{whatsapp_channel.id}/messages",
                 build_message_form(whatsapp_channel, "+15551230000", "hi", None))
    ingest_webhooks(state)
    with state.session_factory() as session:
        conversation_id = session.scalar(select(Conversation.id))
    _disable(state, whatsapp_channel.id)

    response = app.test_client().post(f"/api/v1/conversations/{conversation_id}/messages",
                                      json={"text": "Your parcel ships today."},
                                      headers={"Authorization": f"Bearer {api_token}"})

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "channel_disabled"
    assert error["message"] == (
        "The channel WhatsApp support is disabled, so nothing can be sent through it. "
        "Ask an admin to enable it on the Channels page, or reach the customer another way."
    )
    assert _count(state, OutboxItem) == 0
    assert _count(state, Message) == 1


def test_reply_queued_before_disable_waits(app, state, whatsapp_channel, agent):
    webhooks = app.test_client()
    _post_twilio(webhooks, f"/webhooks/twilio/{whatsapp_channel.id}/messages",
                 build_message_form(whatsapp_channel, "+15551230000", "hi", None))
    ingest_webhooks(state)
    with state.session_factory() as session:
        conversation_id = session.scalar(select(Conversation.id))
        create_reply(session, conversation_id, agent.id, "Queued first.")
        session.commit()
    _disable(state, whatsapp_channel.id)

    from inbox.outbox import claim_next

    with state.session_factory() as session:
        assert claim_next(session) is None
    with state.session_factory() as session:
        assert session.scalar(select(OutboxItem.status)) == "pending"


def test_webhook_url_notes_missing_public_url(app, state, whatsapp_channel):
    client, _, _ = _sign_in(app, state)
    help_id = f'id="channel-{whatsapp_channel.id}-public-url-help"'

    # The page marks where the URL may wrap with <wbr>, which adds no text.
    local = client.get("/channels").get_data(as_text=True).replace("<wbr>", "")
    state.config = dataclasses.replace(state.config, public_url="https://support.example.com")
    public = client.get("/channels").get_data(as_text=True).replace("<wbr>", "")

    assert f"http://localhost/webhooks/twilio/{whatsapp_channel.id}/messages" in local
    assert help_id in local
    assert f"https://support.example.com/webhooks/twilio/{whatsapp_channel.id}/messages" in public
    assert help_id not in public
