"""Satisfaction answers: the customer's reply to the question sent when a conversation was resolved.

A ``resolved`` update template asks the question. The customer's next inbound message in
that conversation carries an answer when its first line is a rating (a digit from 1 to 5,
"4/5" too) or yes/no; anything else is an ordinary message that reopens the conversation.
An answer is stored once per question, with the agent who resolved the conversation.

The conversation stays resolved only when the message is nothing but the answer: a rating
or "yes" alone, or a rating of 4 or 5 or a "yes" followed by one short line of comment
("5" then "thanks!"). A "no" says the problem is not solved, and a low rating with a
comment or any longer text may hold a complaint, so these reopen the conversation for an
agent while the answer is still stored.
"""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.models import (
    Conversation,
    ConversationActivity,
    ConversationStatus,
    Direction,
    Message,
    ProactiveResult,
    ProactiveSend,
    SatisfactionAnswer,
)

log = logging.getLogger(__name__)

# An answer later than this after the question is an ordinary message.
ANSWER_WINDOW = timedelta(days=7)
RESOLVED_TRIGGER = "resolved"
_RATING = re.compile(r"^([1-5])(\s*/\s*5)?$")
# A rating with a comment on the same line: after its scale ("4/5 great", "4 of 5") or a
# separator ("5 - great service", "5! thanks"). A number followed by a word alone, as in
# "2 parcels are missing", is no answer.
_RATING_WITH_COMMENT = re.compile(r"([1-5])(?:\s*(?:/|of|out of)\s*5\b|\s*[!.,:;\u2013\u2014-])", re.IGNORECASE)
# A yes/no with a comment on the same line: "no" followed by a space or punctuation ("no, it
# is still broken", "No it is still broken"), "yes" followed by punctuation ("Yes, thanks!").
# "Yes" and a word alone ("yes I have one more question") may start an ordinary message.
_YES_NO_WITH_COMMENT = re.compile(r"(?:(yes|y)\s*[!.,:;\u2013\u2014-]|(no|n)(?:\s*[!.,:;\u2013\u2014-]|\s))", re.IGNORECASE)
YES_WORDS = frozenset({"yes", "y"})
NO_WORDS = frozenset({"no", "n"})
# A comment after the answer this short, on one line and without a question, stays with
# the answer instead of reopening the conversation ("Thanks, great service!").
SHORT_COMMENT_CHARS = 40
# The lowest rating whose short comment is taken as praise rather than a complaint.
CONTENT_RATING = 4


@dataclass(frozen=True)
class ParsedAnswer:
    """A satisfaction answer: ``kind`` "rating" (score 1 to 5) or "yes_no" (1 yes, 0 no).

    ``only_answer`` is False when the message needs an agent too: a "no", or text after
    the answer that may be a complaint (see the module docstring).
    """

    kind: str
    score: int
    answer: str
    only_answer: bool = True


@dataclass(frozen=True)
class PendingAnswer:
    """An inbound message that answers an open satisfaction question."""

    question_id: int
    parsed: ParsedAnswer


def parse_answer(text: str) -> ParsedAnswer | None:
    """Return the rating or yes/no on the first non-empty line of ``text``, or None.

    The lines after it decide ``only_answer``.
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    line = lines[0] if lines else ""
    word = line.rstrip(string.punctuation + " ").lower()
    if not word:
        return None
    parsed = _whole_line_answer(word, line) if len(word) <= 20 else None
    comment_lines = lines[1:]
    if parsed is None:
        parsed, comment = _answer_with_comment(line)
        if parsed is None:
            return None
        comment_lines = [comment, *comment_lines] if comment else comment_lines
    return replace(parsed, only_answer=_is_only_answer(parsed, comment_lines))


def _whole_line_answer(word: str, line: str) -> ParsedAnswer | None:
    """Return the answer when ``word`` (the line without trailing punctuation) is all of it."""
    rating = _RATING.match(word)
    if rating:
        return ParsedAnswer("rating", int(rating.group(1)), line[:50])
    if word in YES_WORDS:
        return ParsedAnswer("yes_no", 1, line[:50])
    if word in NO_WORDS:
        return ParsedAnswer("yes_no", 0, line[:50])
    return None


def _answer_with_comment(line: str) -> tuple[ParsedAnswer | None, str]:
    """Return the answer that starts ``line`` and the comment after it on the same line."""
    rating = _RATING_WITH_COMMENT.match(line)
    yes_no = None if rating else _YES_NO_WITH_COMMENT.match(line)
    if rating:
        answer = line[:rating.end()].rstrip(string.punctuation + " \u2013\u2014")
        parsed = ParsedAnswer("rating", int(rating.group(1)), answer[:50])
        end = rating.end()
    elif yes_no:
        parsed = ParsedAnswer("yes_no", 1 if yes_no.group(1) else 0, yes_no.group(1) or yes_no.group(2))
        end = yes_no.end()
    else:
        return None, ""
    # The comment keeps its question mark, which marks it as needing an agent.
    comment = line[end:].strip(string.punctuation.replace("?", "") + " \u2013\u2014")
    return parsed, comment


def _is_only_answer(parsed: ParsedAnswer, comment_lines: list[str]) -> bool:
    """Return whether the answer ``parsed`` and its ``comment_lines`` need no agent."""
    if parsed.kind == "yes_no" and parsed.score == 0:
        return False
    if not comment_lines:
        return True
    content = parsed.kind == "yes_no" or parsed.score >= CONTENT_RATING
    if not content or len(comment_lines) > 1:
        return False
    comment = comment_lines[0]
    return len(comment) <= SHORT_COMMENT_CHARS and "?" not in comment


def is_low_answer(kind: str, score: int) -> bool:
    """Tell whether an answer says the customer is not content: a rating under ``CONTENT_RATING``, or a no."""
    if kind == "rating":
        return score < CONTENT_RATING
    return score == 0


def pending_answer(session: Session, conversation: Conversation | None, text: str, now: datetime) -> PendingAnswer | None:
    """Return the question that ``text`` answers, or None when it is an ordinary message.

    The question is the conversation's newest satisfaction update, sent within
    ``ANSWER_WINDOW`` and not answered yet, while the conversation is still resolved and no
    customer message has come since the question. Reads only; call before the new
    message is added.
    """
    if conversation is None or conversation.id is None or conversation.status != ConversationStatus.RESOLVED.value:
        return None
    parsed = parse_answer(text)
    if parsed is None:
        return None
    question = session.execute(
        select(ProactiveSend.id, ProactiveSend.message_id)
        .where(
            ProactiveSend.conversation_id == conversation.id,
            ProactiveSend.trigger == RESOLVED_TRIGGER,
            ProactiveSend.result.in_((ProactiveResult.QUEUED.value, ProactiveResult.SENT.value)),
            ProactiveSend.message_id.is_not(None),
            ProactiveSend.updated_at >= now - ANSWER_WINDOW,
        )
        .order_by(ProactiveSend.id.desc())
        .limit(1)
    ).first()
    if question is None:
        return None
    question_id, question_message_id = question
    answered = session.scalar(select(SatisfactionAnswer.id).where(SatisfactionAnswer.question_id == question_id))
    later_inbound = session.scalar(
        select(Message.id)
        .where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.INBOUND.value,
            Message.id > question_message_id,
        )
        .limit(1)
    )
    if answered is not None or later_inbound is not None:
        return None
    return PendingAnswer(question_id, parsed)


def record_answer(session: Session, pending: PendingAnswer, message: Message) -> SatisfactionAnswer | None:
    """Store the answer that ``message`` (flushed, with an id) gives, in the caller's transaction.

    Returns the stored answer, or None when the question got its answer meanwhile.
    """
    question = session.get(ProactiveSend, pending.question_id)
    if question is None:
        return None
    conversation = question.conversation
    answer = SatisfactionAnswer(
        conversation_id=conversation.id,
        agent_id=_resolving_agent(session, question) or conversation.assignee_id,
        question_id=question.id,
        message_id=message.id,
        kind=pending.parsed.kind,
        score=pending.parsed.score,
        answer=pending.parsed.answer,
        created_at=message.created_at,
    )
    try:
        with session.begin_nested():
            session.add(answer)
    except IntegrityError:
        log.info("satisfaction question %s was already answered", question.id)
        return None
    # Set on the message too, so that serializing it for the new message's event reads no row.
    message.satisfaction_answer = answer
    log.info(
        "conversation %s: satisfaction answer %s (%s) for agent %s",
        conversation.id, answer.score, answer.kind, answer.agent_id,
    )
    return answer


def _resolving_agent(session: Session, question: ProactiveSend) -> int | None:
    """Return the agent whose change to "resolved" the question followed, if an agent made it."""
    prefix = "activity:"
    if not question.occurrence_key.startswith(prefix):
        return None
    activity = session.get(ConversationActivity, int(question.occurrence_key.removeprefix(prefix)))
    return activity.agent_id if activity is not None else None


def answers_for(session: Session, conversation_id: int) -> list[SatisfactionAnswer]:
    """Return the satisfaction answers of a conversation, oldest first."""
    return list(session.scalars(
        select(SatisfactionAnswer)
        .where(SatisfactionAnswer.conversation_id == conversation_id)
        .order_by(SatisfactionAnswer.id)
    ))
