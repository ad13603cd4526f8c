"""Shared fixtures: a real `streamlit run` server on loopback and headless Chromium via Playwright."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from tests.browser import CHROMIUM_ARGS, chromium_path, streamlit_server

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="session")
def app_url():
    """Start `streamlit run streamlit_app.py` on a free loopback port; stop it after the session."""
    # As on a laptop: the PACS test's Orthanc listens on loopback, which a shared host refuses.
    with streamlit_server(env={"HOUNSFIELD_ALLOW_PRIVATE_NETWORKS": "1"}) as (url, _):
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def screenshots():
    """This run's folder for screenshots of failed browser tests, made on first use: a new folder
    in $HOUNSFIELD_SCREENSHOTS (else the system's temporary folder) for every run, never one that
    runs share. Not under pytest's own temporary folder: on a machine where several people run the
    tests, pytest deletes all but the last three runs' folders, screenshots and all."""
    made: list[Path] = []

    def folder() -> Path:
        if not made:
            parent = os.environ.get("HOUNSFIELD_SCREENSHOTS") or tempfile.gettempdir()
            Path(parent).mkdir(parents=True, exist_ok=True)
            made.append(Path(tempfile.mkdtemp(prefix="hounsfield-screenshots-", dir=parent)))
        return made[0]

    return folder


_SHOTS: list[Path] = []  # screenshots taken in this run, listed at its end


def pytest_terminal_summary(terminalreporter):
    if _SHOTS:
        terminalreporter.write_sep("-", f"screenshots of failed browser tests in {_SHOTS[0].parent}")
        for path in _SHOTS:
            terminalreporter.write_line(str(path))


@pytest.fixture
def page(browser, request, screenshots):
    """A fresh browser context (a new Streamlit session); a screenshot is kept on failure."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        path = screenshots() / (re.sub(r"[^\w.-]+", "_", request.node.name) + ".png")
        try:
            pg.screenshot(path=str(path), full_page=True)
            _SHOTS.append(path)
            print(f"screenshot: {path}")
        except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the test failure
            print(f"screenshot failed: {exc}")
    context.close()


@pytest.fixture(scope="session")
def orthanc():
    """A real Orthanc with DICOMweb on a free loopback port, its own storage, stopped afterwards."""
    from tests.orthanc import start_orthanc

    try:
        server = start_orthanc()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()
