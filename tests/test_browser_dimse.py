"""The PACS page's DIMSE side in headless Chromium, against the real Orthanc, used the way a person would."""

from __future__ import annotations

import pytest

from tests.browser import enter_text, streamlit_server
from tests.factory import ct_series, ramp_volume
from tests.orthanc import AET

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def dimse_app_url():
    """The app as on someone's own computer with DIMSE typing allowed (the shared server keeps the defaults)."""
    env = {"HOUNSFIELD_ALLOW_PRIVATE_NETWORKS": "1", "HOUNSFIELD_DIMSE_TYPED_PEERS": "on"}
    with streamlit_server(env=env) as (url, _):
        yield url


def _wait_idle(page) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)


def _fill(page, label: str, value: str) -> None:
    enter_text(page, page.get_by_label(label, exact=True), value)


def _describe_peer(page, url: str, port: int, ae_title: str) -> None:
    page.goto(url + "/PACS")
    _wait_idle(page)
    page.get_by_text("DIMSE (DICOM network)").click()
    _wait_idle(page)
    _fill(page, "Host", "127.0.0.1")
    _fill(page, "Port", str(port))
    _fill(page, "Peer's AE title", ae_title)
    for label, value in (("Host", "127.0.0.1"), ("Port", str(port)), ("Peer's AE title", ae_title)):
        assert page.get_by_label(label, exact=True).input_value() == value
    page.get_by_role("button", name="Test connection (C-ECHO)").click()


def test_echo_search_and_retrieve_with_c_get(page, dimse_app_url, orthanc):
    orthanc.clear()
    orthanc.store(ct_series(ramp_volume((5, 32, 24), seed=4), series_uid="1.2.826.0.4.1", patient_name="BROWSER^DIMSE",
                            extra={"StudyInstanceUID": "1.2.826.0.4"}))
    _describe_peer(page, dimse_app_url, orthanc.dicom_port, AET)
    page.get_by_text(f"{AET}@127.0.0.1:{orthanc.dicom_port} answered C-ECHO").wait_for(timeout=30_000)
    page.get_by_role("button", name="Search studies (C-FIND)").click()
    page.get_by_text("1 study found").wait_for(timeout=30_000)
    assert "BROWSER^DIMSE" not in page.content()  # PHI hidden by default
    page.get_by_role("button", name="Retrieve this series").click()
    page.get_by_text("Retrieved 5 images with C-GET: 1 series loaded").wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "5 x 32 x 24" in page.locator('[data-testid="stSidebar"]').inner_text()


def test_a_wrong_ae_title_is_said_in_words(page, dimse_app_url, orthanc):
    _describe_peer(page, dimse_app_url, orthanc.dicom_port, "NOT-ORTHANC")
    rejected = "rejected the association permanently: called AE title not recognised"
    aborted = "closed the connection (aborted)"  # Orthanc closes right after rejecting: now and then seen first
    for attempt in range(3):
        page.get_by_text(rejected).or_(page.get_by_text(aborted)).first.wait_for(timeout=30_000)
        if page.get_by_text(rejected).count() or attempt == 2:
            break
        page.get_by_role("button", name="Test connection (C-ECHO)").click()
        _wait_idle(page)
    page.get_by_text(rejected).wait_for(timeout=1_000)
