"""A missing test component skips its tests locally but fails them in CI (CI=true)."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    """Skip the calling test when a component is missing, or fail it when running in CI."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{reason} (required in CI: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)
