"""Every setting of every page keeps its value when the user visits the other pages and comes back.

The widgets are found by walking each page as it is drawn, not from a list, so the test keeps
covering widgets added later. A static check makes sure each keyed input widget in the app asks
Streamlit 1.67 to keep its value (``persist_state="session"``): without it, a widget drawn inside a
fragment (the explorer's views) or on a page left during a fragment run loses its value in a real
browser (checked in Chromium), which the frame's re-assignment of keys does not prevent.
"""

from __future__ import annotations

import ast
import datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard import frame, state
from tests.helpers import ROOT, app_test

# Streamlit input widgets whose value a user sets (and that accept persist_state in 1.67).
INPUT_KINDS = ("toggle", "checkbox", "selectbox", "radio", "slider", "select_slider", "number_input", "text_input",
               "text_area", "multiselect", "date_input", "time_input", "color_picker")
# Widgets left as they are, and why.
LEFT_ALONE = {
    "load_pick": "the current series: the sample study has one",
    "faces_source": "'Upload' hides the photo's settings, which are checked instead",
    "pacs_kind": "the DIMSE side hides the DICOMweb settings, which are checked instead",
}
# Values a generic change would make meaningless or slow.
CHOSEN: dict[str, Any] = {
    "pacs_url": "http://127.0.0.1:9/dicom-web",  # loopback, a closed port: nothing leaves the machine
    "histogram_scope": "Slab of slices",
}


def _source_files() -> list[Path]:
    return sorted([*ROOT.glob("dashboard/*.py"), *ROOT.glob("pages/*.py"), ROOT / "streamlit_app.py"])


def _keyed_widget_calls(path: Path) -> list[tuple[int, str, bool]]:
    """(line, kind, asks to persist) of every keyed input widget call in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in INPUT_KINDS:
            kws = {k.arg: k.value for k in node.keywords}
            if "key" in kws:
                persist = kws.get("persist_state")
                found.append((node.lineno, node.func.attr,
                              isinstance(persist, ast.Constant) and persist.value == "session"))
    return found


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_keyed_widget_asks_to_keep_its_value(path):
    missing = [f"line {line}: st.{kind}" for line, kind, ok in _keyed_widget_calls(path) if not ok]
    assert not missing, f"{path.name}: add persist_state=\"session\" to " + ", ".join(missing)


def _widgets(at) -> list:
    return [w for kind in INPUT_KINDS for w in getattr(at, kind)]


def _different(w) -> Any:
    """A value of widget ``w`` other than its current one (None when it has no other)."""
    if w.key in CHOSEN:
        return CHOSEN[w.key]
    value = w.value
    if w.type in ("checkbox", "toggle") or isinstance(value, bool):
        return not value
    if w.type in ("selectbox", "radio"):
        if len(w.options) < 2:
            return None
        index = w.index or 0
        other = w.options[1 if index == 0 else 0]
        return ("index", 1 if index == 0 else 0) if w.type == "selectbox" else other
    if w.type == "number_input":
        step = w.step or 1
        up = value + step
        return up if w.max is None or up <= w.max else value - step
    if w.type == "slider":
        step = w.step
        if isinstance(value, (tuple, list)):
            return (value[0] + step, value[1] - step)
        up = value + step
        return up if up <= w.max else value - step
    if w.type == "date_input":
        return (datetime.date(2020, 1, 2), datetime.date(2020, 1, 30))
    if w.type in ("text_input", "text_area"):
        return f"{value}7"
    if w.type == "multiselect":
        return list(w.options[:1]) if not value else []
    pytest.fail(f"the test does not know how to change a {w.type} ({w.key})")


def _submit_button(at, w):
    return next((b for b in at.button if getattr(b, "form_id", "") == w.form_id), None)


def _submittable(at, w) -> bool:
    if not getattr(w, "form_id", ""):
        return True
    button = _submit_button(at, w)
    return button is not None and not button.proto.disabled


def _set(at, w, value) -> None:
    if isinstance(value, tuple) and value and value[0] == "index":
        w.select_index(value[1])
    else:
        w.set_value(value)
    if getattr(w, "form_id", ""):  # a form's widgets count once the form is submitted
        _submit_button(at, w).click()
    at.run()


def _change_every_widget(at, page: str) -> dict[str, Any]:
    """Give each widget of the page a value other than its first one, one at a time (a change may show
    more widgets); return every keyed widget's value afterwards."""
    done: set[str] = set()
    while True:
        todo = [w for w in _widgets(at) if w.key not in done]
        unkeyed = [f"{w.type} {w.label!r}" for w in todo if w.key is None]
        assert not unkeyed, f"{page}: widgets without a key cannot keep their value: {unkeyed}"
        todo = [w for w in todo if (w.key != state.SHOW_PHI_WIDGET or "Face_detection" in page)
                and not w.proto.disabled and _submittable(at, w)]
        if not todo:  # what is left is disabled (a browser user cannot change it either)
            break
        w = min(todo, key=lambda w: bool(getattr(w, "form_id", "")))  # a form's fields after the rest
        done.add(w.key)
        if w.key in LEFT_ALONE:
            continue
        value = _different(w)
        if value is None:
            continue
        _set(at, w, value)
        assert not at.exception, f"{page}: after changing {w.key}: {at.exception}"
    return {w.key: w.value for w in _widgets(at) if w.key != state.SHOW_PHI_WIDGET}


def test_every_setting_survives_a_tour_of_every_other_page(monkeypatch):
    """Set every widget of every page, page by page; then visit every page again and read them all.

    Between a page's changes and its reading, every other page has been visited (after it while
    changing, before it while reading). The patient-information toggle is switched on on the face
    detection page, as a person found it reset other pages' toggles.
    """
    # As a local user would run it: the cohort page's settings (off on a shared host) are drawn too.
    for name in ("COHORT_RUN", "COHORT_SERVER_PATHS"):
        monkeypatch.setenv(f"HOUNSFIELD_{name}", "on")
    pages = [path for path, _, _ in frame.existing_pages()]
    at = app_test(timeout=240).run()
    expected: dict[str, dict[str, Any]] = {}
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, page
        expected[page] = _change_every_widget(at, page)
        assert expected[page] or page == "streamlit_app.py", f"{page}: no setting found to change"
    assert at.toggle(key=state.SHOW_PHI_WIDGET).value is True
    changed = sum(len(values) for values in expected.values())
    assert changed > 30, expected  # the pages' own settings, not only the sidebar's toggle
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, page
        shown = {w.key: w.value for w in _widgets(at)}
        lost = {key: (value, shown.get(key)) for key, value in expected[page].items() if shown.get(key) != value}
        assert not lost, f"{page}: (set, read back after the tour): {lost}"
        assert shown[state.SHOW_PHI_WIDGET] is True, page


# --- In Chromium: the cases a person met ------------------------------------------------------------

def _go(page, label: str) -> None:
    from tests.browser import wait_idle

    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=label).click()
    page.wait_for_function("title => document.title === title", arg=f"{label} · Hounsfield")
    wait_idle(page)


def _switch(page, label: str):
    return page.locator('[data-testid="stCheckbox"]').filter(has_text=label).locator("input").first


def _flip(page, label: str) -> None:
    from playwright.sync_api import expect

    from tests.browser import wait_idle

    before = _switch(page, label).is_checked()
    page.locator('[data-testid="stCheckbox"]').filter(has_text=label).locator("label").first.click()
    expect(_switch(page, label)).to_be_checked(checked=not before)
    wait_idle(page)


def _choose(page, label: str, option: str) -> None:
    from playwright.sync_api import expect

    from tests.browser import wait_idle

    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.get_by_role("combobox", name=label)).to_have_value(option)
    wait_idle(page)


def _number_box(page, label: str):
    return page.locator('[data-testid="stNumberInput"]').filter(has_text=label).locator("input")


@pytest.mark.browser
def test_settings_survive_page_visits_in_chromium(page, app_url):
    """The explorer's colour map and slab rendering (drawn in a fragment), the 3D page's settings, and toggles
    of other pages, after the patient-information toggle was switched on on the face detection page."""
    from playwright.sync_api import expect

    from tests.browser import enter_text, no_exception, wait_idle

    page.goto(app_url)
    wait_idle(page)
    _go(page, "3D isosurface")
    enter_text(page, _number_box(page, "Largest parts"), "3")
    _go(page, "Volume explorer")
    _choose(page, "Colours", "Viridis")
    _choose(page, "Slab rendering", "Mean")
    _go(page, "HU histogram")
    _flip(page, "Log counts")
    _flip(page, "Cumulative")
    _go(page, "Study details and privacy")
    _flip(page, "Shift dates instead of removing them")
    _go(page, "Face detection")
    _flip(page, "Equalise the histogram")
    _flip(page, "Show patient information (PHI)")
    for label in ("Volume explorer", "HU histogram", "Study details and privacy", "3D isosurface", "Face detection"):
        _go(page, label)
        no_exception(page)
        assert _switch(page, "Show patient information (PHI)").is_checked(), label
    _go(page, "3D isosurface")
    expect(_number_box(page, "Largest parts")).to_have_value("3")
    _go(page, "Volume explorer")
    expect(page.get_by_role("combobox", name="Colours")).to_have_value("Viridis")
    expect(page.get_by_role("combobox", name="Slab rendering")).to_have_value("Mean")
    _go(page, "HU histogram")
    assert _switch(page, "Log counts").is_checked() and _switch(page, "Cumulative").is_checked()
    _go(page, "Study details and privacy")
    assert _switch(page, "Shift dates instead of removing them").is_checked()
    _go(page, "Face detection")
    assert _switch(page, "Equalise the histogram").is_checked()


@pytest.mark.browser
def test_a_reload_warns_before_dropping_a_loaded_study_and_says_so_after(page, app_url, tmp_path):
    from playwright.sync_api import expect

    from tests.browser import wait_idle
    from tests.factory import ct_series, ramp_volume

    paths = []
    for name, data in ct_series(ramp_volume((3, 16, 12))):
        path = tmp_path / name.replace("/", "_")
        path.write_bytes(data)
        paths.append(str(path))
    page.goto(app_url)
    wait_idle(page)
    gone = page.get_by_text("The study you had loaded is no longer open")
    expect(gone).to_be_hidden()  # a first visit: nothing was lost
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
    page.get_by_text("3 uploaded files: 1 series found").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("heading", name="Series").click()  # the person has used the page: browsers ask only then
    dialogs = []

    def answer(dialog):
        dialogs.append(dialog.type)
        dialog.accept()

    page.on("dialog", answer)
    page.reload()
    wait_idle(page)
    assert dialogs == ["beforeunload"]
    expect(gone).to_be_visible()
    # Once said, not again; and the sample, which a reload does not lose, asks nothing.
    dialogs.clear()
    page.reload()
    wait_idle(page)
    expect(gone).to_be_hidden()
    assert dialogs == []


def test_the_dimse_settings_survive_a_tour_too(monkeypatch):
    """The PACS page's DIMSE side (hidden behind its connection choice in the tour above)."""
    monkeypatch.setenv("HOUNSFIELD_DIMSE_TYPED_PEERS", "on")
    monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
    pages = [path for path, _, _ in frame.existing_pages()]
    at = app_test(timeout=240).run()
    at.switch_page("pages/6_PACS.py").run()
    at.radio(key="pacs_kind").set_value("DIMSE (DICOM network)").run()
    monkeypatch.setitem(CHOSEN, "dimse_host", "127.0.0.1")  # loopback and a closed port: nothing leaves
    monkeypatch.setitem(CHOSEN, "dimse_port", 9)
    expected = _change_every_widget(at, "pages/6_PACS.py")
    assert {"dimse_host", "dimse_port", "dimse_aet", "dimse_our_aet", "dimse_timeout", "dimse_name"} <= set(expected)
    assert expected["dimse_host"] == "127.0.0.1" and expected["dimse_port"] == 9
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, page
    at.switch_page("pages/6_PACS.py").run()
    shown = {w.key: w.value for w in _widgets(at)}
    assert {key: shown.get(key) for key in expected} == expected


def test_settings_kept_from_one_series_fit_the_next(monkeypatch):
    """Settings kept for the session meet a series whose values or size differ: set every widget of
    every page on the sample CT, then open a small MR (stored units 127 to 1563, 4 slices) and visit
    every page. Kept ranges, thresholds and slice counts are fitted to the MR (nothing fails), and the
    CT's settings come back in HU when the CT does."""
    import numpy as np

    from core import Volume, sample_ct

    for name in ("COHORT_RUN", "COHORT_SERVER_PATHS"):
        monkeypatch.setenv(f"HOUNSFIELD_{name}", "on")
    pages = [path for path, _, _ in frame.existing_pages()]
    at = app_test(timeout=240).run()
    for page in pages:
        at.switch_page(page).run()
        _change_every_widget(at, page)
    rng = np.random.default_rng(3)
    mr = Volume(voxels=rng.integers(127, 1564, (4, 32, 40)).astype(np.int16), spacing=(3.0, 1.0, 1.0),
                series_uid="1.2.3", modality="MR")
    at.session_state[state.STUDY] = state.Study(volumes=[sample_ct(), mr], skipped=[], source="test")
    at.session_state[state.CURRENT] = 1
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, f"{page} on the MR: {at.exception}"
    at.switch_page("pages/2_HU_histogram.py").run()
    low, high = at.slider(key="histogram_range").value
    assert 127 <= low < high <= 1564
    at.switch_page("pages/3_Isosurface_3D.py").run()
    assert 127 <= at.slider(key="iso_level").value <= 1563
    at.session_state[state.CURRENT] = 0
    at.switch_page("pages/2_HU_histogram.py").run()
    assert not at.exception
    assert at.slider(key="histogram_range").value == (-1100.0, 3100.0)  # anew in HU: the MR's range meant nothing
