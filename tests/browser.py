"""Helpers the real-browser tests and benchmarks share: Chromium, free ports, waiting for a run."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

__all__ = ["CHROMIUM_ARGS", "chromium_path", "enter_text", "free_port", "no_exception", "wait_idle"]

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.fail("Chromium was not found: run scripts/test.sh (it installs Debian's chromium) or set CHROMIUM_PATH")


def wait_idle(page) -> None:
    """Wait until Streamlit has finished the current run."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)


def no_exception(page) -> None:
    """Nothing on the page is an exception or a traceback."""
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.content()


def enter_text(page, box, value: str) -> None:
    """Type ``value`` into ``box`` and press Enter, then wait until the rerun that Enter starts has
    drawn the box again with the value and finished (the first idle check can come before it)."""
    from playwright.sync_api import expect

    box.fill(value)
    box.press("Enter")
    wait_idle(page)
    expect(box).to_have_value(value, timeout=30_000)
    wait_idle(page)
