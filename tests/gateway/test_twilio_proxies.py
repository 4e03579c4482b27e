"""Webhook signatures behind reverse proxies, found through a configured count of trusted hops."""

from __future__ import annotations

import dataclasses

import pytest
from twilio.request_validator import RequestValidator

from gateway import create_app, get_state
from gateway.config import Config, ConfigError
from gateway.simulate import build_message_form
from tests.conftest import TWILIO_AUTH_TOKEN

PUBLIC = "https://support.example.com:8443"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "support.example.com", "X-Forwarded-Port": "8443"}


@pytest.fixture
def proxied_app(config):
    app = create_app(dataclasses.replace(config, trusted_proxies=1))
    yield app
    get_state(app).engine.dispose()


def _post(app, channel, signed_base: str, headers: dict[str, str], query: str = "?source=wa"):
    form = build_message_form(channel, "+15551230000", "hello", None)
    form["ChannelMetadata"] = '{"type":"whatsapp"}'  # a parameter Twilio may add at any time
    path = f"/webhooks/twilio/{channel.id}/messages{query}"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(signed_base + path, form)
    return app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature, **headers})


def test_trusted_proxy_headers_rebuild_signed_url(proxied_app, whatsapp_channel):
    assert _post(proxied_app, whatsapp_channel, PUBLIC, FORWARDED).status_code == 200


def test_forwarded_headers_ignored_without_trusted_proxy(app, whatsapp_channel):
    # A client that talks to the service directly cannot choose the URL being verified.
    assert _post(app, whatsapp_channel, PUBLIC, FORWARDED).status_code == 403


def test_direct_request_still_verifies_with_proxy_count(proxied_app, whatsapp_channel):
    assert _post(proxied_app, whatsapp_channel, "http://localhost", {}).status_code == 200


def test_wrong_forwarded_port_fails(proxied_app, whatsapp_channel):
    headers = {**FORWARDED, "X-Forwarded-Port": "9443"}
    assert _post(proxied_app, whatsapp_channel, PUBLIC, headers).status_code == 403


@pytest.mark.parametrize("value", ["-1", "11"])
def test_trusted_proxies_out_of_range(value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Config.from_env({"SWITCHBOARD_TRUSTED_PROXIES": value, "SWITCHBOARD_SECRET_KEY": "x",
                         "SWITCHBOARD_DATABASE_URL": "sqlite://"})
