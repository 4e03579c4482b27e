"""`switchboard channel add whatsapp --provider meta` and the Meta setting of the configuration."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import Config, ConfigError
from inbox.channel_config import list_channels

APP_SECRET = "app-secret-from-the-environment"
ACCESS_TOKEN = "EAAaccess-token-from-the-environment"
META = ["channel", "add", "whatsapp", "--provider", "meta", "--name", "Cloud", "--number", "+15550783881",
        "--phone-number-id", "106540352242922", "--verify-token", "my-verify-token"]


@pytest.fixture
def run(database_url, tmp_path):
    runner = CliRunner()
    base = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    def invoke(*args: str, input: str | None = None, secrets: bool = True, **env: str):
        environment = {**base, **env}
        if secrets:
            environment["SWITCHBOARD_META_APP_SECRET"] = APP_SECRET
            environment["SWITCHBOARD_META_ACCESS_TOKEN"] = ACCESS_TOKEN
        return runner.invoke(main, list(args), env=environment, input=input, catch_exceptions=False)

    return invoke


def test_meta_channel_takes_secrets_from_environment(run, state):
    result = run(*META)

    assert result.exit_code == 0, result.output
    assert "Added whatsapp channel 1: Cloud <+15550783881>." in result.output
    assert "<your public URL>/webhooks/meta/1" in result.output
    assert "messages field" in result.output
    for secret in (APP_SECRET, ACCESS_TOKEN, "my-verify-token"):
        assert secret not in result.output
    with state.session_factory() as session:
        (channel,) = list_channels(session)
        assert channel.settings == {
            "provider": "meta",
            "phone_number_id": "106540352242922",
            "verify_token": "my-verify-token",
            "app_secret": APP_SECRET,
            "access_token": ACCESS_TOKEN,
        }


def test_meta_channel_prompts_for_missing_secrets(run, state):
    result = run(*META, "--api-version", "v22.0", input="prompted-secret\nprompted-token\n", secrets=False)

    assert result.exit_code == 0, result.output
    assert "Meta app secret" in result.output
    assert "Meta access token" in result.output
    assert "prompted" not in result.output
    with state.session_factory() as session:
        (channel,) = list_channels(session)
        assert channel.settings["app_secret"] == "prompted-secret"
        assert channel.settings["access_token"] == "prompted-token"
        assert channel.settings["api_version"] == "v22.0"


def test_webhook_url_uses_the_public_url(run):
    result = run(*META, SWITCHBOARD_PUBLIC_URL="https://support.example.com")

    assert "https://support.example.com/webhooks/meta/1" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--phone-number-id", "1"], "--verify-token is required"),
        (["--verify-token", "t"], "--phone-number-id is required"),
        (["--phone-number-id", "1", "--verify-token", "t", "--account-sid", "AC1"], "apply to --provider twilio"),
        (["--phone-number-id", "12-34", "--verify-token", "t"], "phone number ID must be the digits"),
        (["--phone-number-id", "1", "--verify-token", ""], "verify token is missing"),
        (["--phone-number-id", "1", "--verify-token", "t", "--api-version", "23"], "must look like v23.0"),
    ],
)
def test_invalid_meta_options_are_named(run, arguments, message):
    result = run("channel", "add", "whatsapp", "--provider", "meta", "--name", "Cloud",
                 "--number", "+15550783881", *arguments)

    assert result.exit_code == 1
    assert message in result.output


def test_twilio_channel_refuses_meta_options(run):
    result = run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
                 "--account-sid", "AC" + "1" * 32, "--auth-token", "token", "--phone-number-id", "1")

    assert result.exit_code == 1
    assert "apply to --provider meta only" in result.output


def test_twilio_channel_still_needs_account_sid(run):
    result = run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886", "--auth-token", "t")

    assert result.exit_code == 1
    assert "--account-sid is required" in result.output


def test_phone_number_id_is_unique(run):
    run(*META)
    again = run(*[("+15550783882" if part == "+15550783881" else part) for part in META])

    assert again.exit_code == 1
    assert "already uses phone number ID 106540352242922" in again.output


def test_meta_channel_is_listed(run):
    run(*META)

    listing = run("channel", "list")

    assert "\twhatsapp\tenabled\tCloud\t+15550783881\t-\t-" in listing.output


def test_meta_api_base_url_is_read_and_checked(tmp_path, caplog):
    environ = {"SWITCHBOARD_INSTANCE_DIR": str(tmp_path), "SWITCHBOARD_META_API_BASE_URL": "http://127.0.0.1:9"}
    caplog.set_level(logging.WARNING)

    config = Config.from_env({**environ, "SWITCHBOARD_META_APP_SECRET": "s", "SWITCHBOARD_META_ACCESS_TOKEN": "t"})

    assert config.meta_api_base_url == "http://127.0.0.1:9"
    assert "ignoring unknown environment variables" not in caplog.text
    with pytest.raises(ConfigError, match="META_API_BASE_URL"):
        Config.from_env({**environ, "SWITCHBOARD_META_API_BASE_URL": "127.0.0.1:9"})


def test_simulate_meta_posts_signed_cloud_api_webhook(run, live_server, state):
    from sqlalchemy import select

    from inbox.models import Contact, Message, RawPayload

    assert run(*META).exit_code == 0

    result = run("simulate", "whatsapp", "--url", live_server.url, "--from", "+15551230000",
                 "--name", "Grace", "Is my order late?")

    assert result.exit_code == 0, result.output
    assert "Delivered message wamid." in result.output
    assert "to channel 1 (Cloud)" in result.output
    with state.session_factory() as session:
        message = session.scalar(select(Message))
        assert message.text == "Is my order late?"
        assert message.provider_message_id in result.output
        assert session.scalar(select(Contact.name)) == "Grace"
        assert session.scalar(select(RawPayload.format)) == "meta-json"


def test_simulated_meta_webhook_parses_and_verifies(run, state):
    from channels.whatsapp.meta import SIGNATURE_HEADER, parse_webhook, signature, verify_signature
    from gateway.simulate import build_meta_webhook

    assert run(*META).exit_code == 0
    with state.session_factory() as session:
        channel = list_channels(session)[0]
        message_id, body = build_meta_webhook(channel, "+15551230000", "Hello there", "Grace")

    verify_signature(APP_SECRET, body, signature(APP_SECRET, body))
    (parsed,) = parse_webhook(body).messages
    assert SIGNATURE_HEADER == "X-Hub-Signature-256"
    assert parsed.phone_number_id == "106540352242922"
    assert parsed.message.provider_message_id == message_id
    assert parsed.message.sender.value == "+15551230000"
    assert parsed.message.sender.display_name == "Grace"
    assert parsed.message.text == "Hello there"
    assert [r.value for r in parsed.message.recipients] == ["+15550783881"]
