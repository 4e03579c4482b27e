"""The delivery-status state machine shared by every channel.

Providers report delivery progress out of order and more than once: Twilio can post
``read`` before a late ``delivered``, and retries a callback that timed out. A stored
status therefore moves only forward along

    queued -> sent -> delivered -> read

and ``failed`` or ``undelivered`` end it. A failure report counts only while the
message is queued or sent. Once it is delivered or read, the message has reached the
customer's device, so a later failure report is stale and ignored.
"""

from __future__ import annotations

from channels.types import DeliveryState

# Rank of each progress state. A report advances the stored status only to a higher rank.
STATUS_ORDER: dict[DeliveryState, int] = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENT: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.READ: 3,
}

FINAL_STATES: frozenset[DeliveryState] = frozenset(
    {DeliveryState.FAILED, DeliveryState.UNDELIVERED}
)

# States from which a failure report still applies.
_FAILABLE_STATES: frozenset[DeliveryState] = frozenset(
    {DeliveryState.QUEUED, DeliveryState.SENT}
)


def advances(current: DeliveryState | None, new: DeliveryState) -> bool:
    """Return whether a report of ``new`` should replace the stored ``current`` status.

    ``current`` is None when nothing is stored yet, and then any report applies. A
    repeated report of the same state returns False, so callers can skip the write.
    """
    if current is None:
        return True
    if current == new or current in FINAL_STATES:
        return False
    if new in FINAL_STATES:
        return current in _FAILABLE_STATES
    return STATUS_ORDER[new] > STATUS_ORDER[current]


def apply_status(current: DeliveryState | None, new: DeliveryState) -> DeliveryState:
    """Return the status to store after a report of ``new`` arrives on ``current``."""
    if advances(current, new):
        return new
    # advances() returns True whenever current is None, so current is set here.
    assert current is not None
    return current
