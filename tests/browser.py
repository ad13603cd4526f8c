"""Helpers the real-browser tests and benchmarks share: Chromium, free ports, waiting for a run."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["CHROMIUM_ARGS", "chromium_path", "enter_text", "free_port", "no_exception", "streamlit_server",
           "wait_idle"]

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


@contextlib.contextmanager
def streamlit_server(*, env: dict[str, str] | None = None, python_args: list[str] | None = None):
    """`streamlit run streamlit_app.py` on a free loopback port: yields (url, process), stops it after.

    ``env`` is added to this process's environment; ``python_args`` replaces ``-m streamlit``
    (e.g. ``-c`` code that patches something, then runs Streamlit's command line). When the
    server stops, its log must not carry a traceback from the app.
    """
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, *(python_args or ["-m", "streamlit"]), "run", str(ROOT / "streamlit_app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"streamlit exited early:\n{log.read().decode(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("streamlit did not become healthy within 60 s")
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.seek(0)
    output = log.read().decode(errors="replace")
    assert "Traceback" not in output, output[-4000:]
