"""The face check's page in a real Chromium."""

from __future__ import annotations

import pytest

from tests.browser import no_exception, wait_idle

pytestmark = pytest.mark.browser


def test_the_ct_check_table_shows_all_twelve_renderings(page, app_url):
    """No row of the evidence table is hidden behind a scroll inside it (issue 20: no cut-off tables)."""
    page.goto(app_url)
    wait_idle(page)
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Face detection").click()
    page.wait_for_function("() => document.title.startsWith('Face detection')")
    wait_idle(page)
    page.get_by_text("Built-in synthetic head").click()
    wait_idle(page)
    page.get_by_role("button", name="Check this CT for a recognisable face").click()
    page.get_by_text("A face was found in").wait_for(timeout=120_000)
    wait_idle(page)
    tables = page.locator('[data-testid="stDataFrame"]')
    tables.nth(1).locator(".dvn-scroller").wait_for()  # the photo's faces, then the renderings' evidence
    heights = tables.evaluate_all(
        "ts => ts.map(t => t.querySelector('.dvn-scroller')).map(s => [s.scrollHeight, s.clientHeight])")
    assert all(rows <= shown for rows, shown in heights), f"a table scrolls inside: {heights} (rows, shown) px"
    no_exception(page)
