"""Reactions in Cloud API webhooks: the emoji and the message it belongs to.

The Cloud API puts the target in ``reaction.message_id`` and leaves ``reaction.emoji`` out
when the customer removes a reaction.
"""

from __future__ import annotations

from channels.whatsapp.meta import parse_webhook
from tests.support.meta_server import change, encode, entry, message, webhook_body

TARGET = "wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI0QjQ2RTNCQ0UyRkI0OTk2MTQA"


def _parse_reaction(reaction: dict):
    body = webhook_body(entry(change(messages=[message("15551230000", "reaction", reaction)])))
    (parsed,) = parse_webhook(encode(body)).messages
    return parsed.message


def test_reaction_names_its_target():
    reaction = _parse_reaction({"message_id": TARGET, "emoji": "👍🏽"})

    assert reaction.in_reply_to == TARGET
    assert reaction.content == {"type": "reaction", "emoji": "👍🏽"}
    assert reaction.text == "Reacted 👍🏽 to a message"


def test_removed_reaction_has_no_emoji():
    for removed in ({"message_id": TARGET}, {"message_id": TARGET, "emoji": ""}):
        reaction = _parse_reaction(removed)

        assert reaction.in_reply_to == TARGET
        assert reaction.content == {"type": "reaction", "emoji": None}
        assert reaction.text == "Removed a reaction from a message"


def test_reaction_without_target_is_kept_unlinked():
    reaction = _parse_reaction({"emoji": "🙏"})

    assert reaction.in_reply_to is None
    assert reaction.content == {"type": "reaction", "emoji": "🙏"}
