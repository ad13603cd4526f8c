"""Hostile file contents in a real browser: text from DICOM headers never becomes an image,
a link or markup on any page (issue 15, finding 9), and downloads survive quick clicks."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from tests.browser import no_exception as _no_exception
from tests.browser import wait_idle as _wait_idle
from tests.factory import ct_series, ramp_volume

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
              pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")]


class _Beacon(http.server.ThreadingHTTPServer):
    """A loopback server that records every request (a tracking beacon's view of the world)."""

    def __init__(self) -> None:
        self.hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 - the handler's own self
                self.hits.append(handler.path)
                handler.send_response(204)
                handler.end_headers()

            do_POST = do_GET  # noqa: N815

            def log_message(handler, *args) -> None:  # noqa: N805
                return

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def beacon():
    server = _Beacon()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _payload(url: str, field: str) -> str:
    """Markdown, HTML, Streamlit directives and bare addresses, each pointing at the beacon."""
    return (f"![x]({url}/img-{field}.png) <img src='{url}/html-{field}.png'> [open]({url}/link-{field}) "
            f"{url}/auto-{field} www.beacon-{field}.example me@beacon.example :red[{field}] $x^2$ **{field}**")


FIELDS = ("RescaleType", "SeriesDescription", "ConvolutionKernel", "Manufacturer", "ManufacturerModelName",
          "SequenceName", "ScanningSequence", "BodyPartExamined", "StationName", "InstitutionName")


def _hostile_mr(tmp_path, url: str) -> list[str]:
    extra = {f: _payload(url, f) for f in FIELDS}
    files = ct_series(ramp_volume((8, 32, 32)), modality="MR", intercept=0.0, patient_name=_payload(url, "Patient"),
                      extra=extra)
    paths = []
    for name, data in files:
        p = tmp_path / name.replace("/", "_")
        p.write_bytes(data)
        paths.append(str(p))
    return paths


def _visit(page, label: str) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=label).click()
    page.wait_for_function("title => document.title === title", arg=f"{label} · Hounsfield")
    _wait_idle(page)
    _no_exception(page)


def _links_from_file_text(page, beacon_url: str) -> list[str]:
    """Every link or image address in the page (Plotly's SVG links included) that the file made."""
    return page.evaluate(
        """(beacon) => [...document.querySelectorAll('a, img, image, source, iframe')]
            .map(e => e.getAttribute('href') || e.getAttribute('xlink:href') || e.getAttribute('src') || '')
            .filter(h => h.includes(beacon) || h.includes('beacon') || h.startsWith('mailto:'))""",
        beacon_url.split("//")[1],
    )


def test_file_text_makes_no_request_and_no_link_on_any_page(page, app_url, tmp_path, beacon):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if beacon.url in r.url or "beacon" in r.url else None)
    page.goto(app_url)
    _wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        _hostile_mr(tmp_path, beacon.url))
    page.get_by_text("8 uploaded files: 1 series found").wait_for(timeout=60_000)
    _wait_idle(page)
    for reveal in (False, True):
        if reveal:  # descriptions, names and file names appear once PHI is revealed: still only text
            page.locator('[data-testid="stSidebar"]').get_by_text("Show patient information (PHI)").click()
            _wait_idle(page)
        _visit(page, "Load a study")
        _visit(page, "Volume explorer")
        page.get_by_text("At the crosshair:").first.wait_for()  # the value carries the unit
        _wait_idle(page)
        _visit(page, "HU histogram")
        page.locator(".js-plotly-plot").first.wait_for()
        _visit(page, "3D isosurface")
        page.locator(".hf-iso[data-drawn]").first.wait_for(timeout=60_000)  # the sample's surface shows on arrival
        _wait_idle(page)
        _visit(page, "Study details and privacy")
        page.get_by_role("button", name="Prepare the de-identified series").click()
        page.get_by_text("files de-identified").wait_for()
        _visit(page, "Face detection")
        assert _links_from_file_text(page, beacon.url) == []
    # The file's text did reach the pages, as text.
    _visit(page, "Load a study")
    assert "img-Manufacturer.png" in page.locator('[data-testid="stMain"]').inner_text()
    assert requested == [] and beacon.hits == []


def test_two_mesh_downloads_150_ms_apart_both_arrive(page, app_url):
    """A download click must not rerun the page: a rerun registers each download button's file
    anew and drops the one the browser still holds, so a second click landing in that window
    asked for a file that no longer existed ("Deferred file not found", the button spinning)."""
    page.goto(app_url + "/Isosurface_3D")
    _wait_idle(page)
    page.locator(".hf-iso[data-drawn]").wait_for(timeout=60_000)  # the sample's surface, drawn on arrival
    _wait_idle(page)
    page.evaluate("""() => {
        window.hfRuns = 0;
        const app = document.querySelector('[data-testid="stApp"]');
        new MutationObserver(() => {
            if (app.getAttribute('data-test-script-state') === 'running') window.hfRuns += 1;
        }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    }""")
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.get_by_role("button", name="STL").click()
    time.sleep(0.15)  # the reported gap between the two clicks, not a wait for the page
    page.get_by_role("button", name="PLY").click()
    deadline = time.monotonic() + 30
    while len(downloads) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # lets Playwright deliver the download events
    assert sorted(d.suggested_filename.rsplit(".", 1)[1] for d in downloads) == ["ply", "stl"]
    for d in downloads:
        assert d.failure() is None and d.path().stat().st_size > 1000
    assert page.evaluate("window.hfRuns") == 0  # neither click reran the page
    _no_exception(page)
