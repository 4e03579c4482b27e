"""Fixtures of the inbox tests."""

from __future__ import annotations

import pytest

from inbox.events import add_publisher


@pytest.fixture
def published(state) -> list[dict]:
    """Collect every event that the app's sessions publish after commit."""
    events: list[dict] = []
    add_publisher(state.session_factory, events.extend)
    return events
