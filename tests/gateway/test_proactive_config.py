"""The proactive-update settings: read from the environment, rejected when invalid."""

from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.config import Config, ConfigError, proactive_settings_from


def test_settings_from_environment(tmp_path):
    config = Config.from_env({
        "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
        "SWITCHBOARD_TIME_ZONE": "Europe/Berlin",
        "SWITCHBOARD_BUSINESS_HOURS": "mon-thu 08:30-16:00",
        "SWITCHBOARD_QUIET_HOURS": "22:00-07:30",
        "SWITCHBOARD_PROACTIVE_DAILY_CAP": "2",
        "SWITCHBOARD_PROACTIVE_CATCH_UP_HOURS": "6",
    })

    settings = proactive_settings_from(config)

    assert settings.workspace_zone == ZoneInfo("Europe/Berlin")
    assert settings.business_hours.days == frozenset({0, 1, 2, 3})
    assert (settings.business_hours.start, settings.business_hours.end) == (time(8, 30), time(16, 0))
    assert (settings.quiet_hours.start, settings.quiet_hours.end) == (time(22, 0), time(7, 30))
    assert settings.daily_cap == 2
    assert settings.catch_up == timedelta(hours=6)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SWITCHBOARD_TIME_ZONE", "Mars/Olympus", "IANA"),
        ("SWITCHBOARD_BUSINESS_HOURS", "weekdays", "mon-fri 09:00-17:00"),
        ("SWITCHBOARD_QUIET_HOURS", "late", "HH:MM-HH:MM"),
        ("SWITCHBOARD_PROACTIVE_DAILY_CAP", "-1", "at least 0"),
        ("SWITCHBOARD_PROACTIVE_SWEEP_INTERVAL", "0", "at least 1"),
        ("SWITCHBOARD_SCHEDULER_MISFIRE_GRACE", "0", "at least 1"),
    ],
)
def test_invalid_setting_rejected(tmp_path, variable, value, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Config.from_env({"SWITCHBOARD_INSTANCE_DIR": str(tmp_path), variable: value})

    assert variable.removeprefix("SWITCHBOARD_") in str(raised.value)
