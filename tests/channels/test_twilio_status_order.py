"""The delivery-status state machine against Twilio's out-of-order, repeated callbacks."""

from itertools import permutations

import pytest

from channels.delivery import STATUS_ORDER, advances, apply_status
from channels.types import DeliveryState

QUEUED = DeliveryState.QUEUED
SENT = DeliveryState.SENT
DELIVERED = DeliveryState.DELIVERED
READ = DeliveryState.READ
UNDELIVERED = DeliveryState.UNDELIVERED
FAILED = DeliveryState.FAILED

# Status callbacks can repeat and arrive in any order.
CALLBACKS = [SENT, DELIVERED, READ, SENT, DELIVERED]


def replay(start: DeliveryState | None, reports: list[DeliveryState]) -> list[DeliveryState]:
    """Return the stored status after each report, as a status column would hold it."""
    history = []
    current = start
    for report in reports:
        current = apply_status(current, report)
        history.append(current)
    return history


@pytest.mark.parametrize(
    "order",
    sorted(set(permutations(CALLBACKS))),
    ids=lambda order: "-".join(state.value for state in order),
)
def test_shuffled_callbacks_never_regress(order):
    history = replay(QUEUED, list(order))

    ranks = [STATUS_ORDER[state] for state in history]
    assert ranks == sorted(ranks)
    assert history[-1] is READ


def test_late_sent_after_read_is_ignored():
    assert advances(READ, SENT) is False
    assert advances(READ, DELIVERED) is False
    assert advances(DELIVERED, SENT) is False


def test_forward_steps_advance():
    assert advances(QUEUED, SENT) is True
    assert advances(SENT, DELIVERED) is True
    assert advances(DELIVERED, READ) is True
    assert advances(QUEUED, READ) is True


def test_repeated_report_does_not_advance():
    for state in DeliveryState:
        assert advances(state, state) is False, state


def test_first_report_always_applies():
    for state in DeliveryState:
        assert advances(None, state) is True, state


@pytest.mark.parametrize("failure", [FAILED, UNDELIVERED])
def test_failure_before_delivery_applies(failure):
    assert advances(QUEUED, failure) is True
    assert advances(SENT, failure) is True


@pytest.mark.parametrize("failure", [FAILED, UNDELIVERED])
def test_failure_after_delivery_is_ignored(failure):
    assert advances(DELIVERED, failure) is False
    assert advances(READ, failure) is False


@pytest.mark.parametrize("final", [FAILED, UNDELIVERED])
def test_final_state_accepts_nothing(final):
    for state in DeliveryState:
        assert advances(final, state) is False, state


@pytest.mark.parametrize("order", [[SENT, UNDELIVERED, SENT], [UNDELIVERED, SENT, SENT]])
def test_undelivered_wins_over_late_sent(order):
    assert replay(QUEUED, order)[-1] is UNDELIVERED


def test_progress_states_are_ranked_in_delivery_order():
    assert [state for state, _ in sorted(STATUS_ORDER.items(), key=lambda item: item[1])] == [
        QUEUED,
        SENT,
        DELIVERED,
        READ,
    ]
