"""The garbage collector setting of started processes."""

from __future__ import annotations

import gc

from gateway import freeze_start_up_objects


def test_start_up_objects_are_frozen():
    # The collector tracks every list, so this one is among the objects that the call freezes.
    early_list = ["created before the freeze"]
    assert gc.is_tracked(early_list)
    before = gc.get_freeze_count()
    try:
        freeze_start_up_objects()
        assert gc.get_freeze_count() > before
        assert not any(item is early_list for item in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(item is early_list for item in gc.get_objects())
