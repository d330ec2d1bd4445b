"""The headless Chromium the browser tests drive (the HTML report, the web example)."""

from __future__ import annotations

import shutil

import pytest


def chromium(unchecked: str) -> str:
    """Chromium's executable, or skip the test saying what goes unchecked without it."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"headless Chromium is not installed (apt-get install -y chromium); {unchecked}")
