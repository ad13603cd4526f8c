"""The explorer's view of loops, projections and galleries, and every page's word on each kind (AppTest)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import load_series
from dashboard.image_view import display_step, frame_payload
from dashboard.state import Study
from dashboard.text import md_escape
from tests.helpers import app_test, page_test, page_text, table_with
from tests.kinds_factory import image_file, loop_pixels, uid

ROOT = Path(__file__).resolve().parents[1]
PAGES = {name: ROOT / "pages" / name for name in
         ("1_Volume_explorer.py", "2_HU_histogram.py", "3_Isosurface_3D.py", "4_Face_detection.py")}


def _load(*files):
    res = load_series(list(files))
    assert res.skipped == []
    return res.volumes


def _loop():
    return _load(("loop.dcm", image_file(loop_pixels(30), modality="US", extra={"FrameTime": 40.0})))[0]


def _colour_loop():
    rgb = np.zeros((3, 8, 10, 3), np.uint8)
    rgb[..., 0] = np.arange(3)[:, None, None] * 100
    rgb[..., 2] = 77
    return _load(("c.dcm", image_file(rgb, modality="US", photometric="RGB")))[0]


def _cr():
    pixels = np.zeros((40, 60), np.uint16)
    pixels[:, 30:] = 1000
    return _load(("cr.dcm", image_file(pixels, modality="CR", photometric="MONOCHROME1",
                                       extra={"ImagerPixelSpacing": [0.2, 0.2], "WindowCenter": 500,
                                              "WindowWidth": 1000})))[0]


def _gallery():
    series = uid()
    return _load(("a.dcm", image_file(np.full((10, 20), 7, np.uint8), modality="CT", secondary_capture=True,
                                      series_uid=series)),
                 ("b.dcm", image_file(np.full((30, 16, 3), 200, np.uint8), photometric="RGB", series_uid=series,
                                      instance=2)))[0]


KINDS = {"loop": _loop, "colour loop": _colour_loop, "projection": _cr, "gallery": _gallery}


def _decode(data: bytes) -> tuple[dict, list[np.ndarray]]:
    """The component's header and frames, decoded as the browser decodes them."""
    n = struct.unpack("<I", data[:4])[0]
    header = json.loads(data[4:4 + n])
    frames = []
    for meta in header["frames"]:
        blob = data[4 + n + meta["offset"]:4 + n + meta["offset"] + meta["length"]]
        if meta["png"]:
            frames.append(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")))
        else:
            dtype = {"u1": "<u1", "i2": "<i2", "f4": "<f4"}[header["dtype"]]
            frames.append(np.frombuffer(zlib.decompress(blob), dtype).reshape(meta["rows"], meta["cols"]))
    return header, frames


class TestPayload:
    def test_loop_frames_and_rate(self):
        vol = _loop()
        header, frames = _decode(frame_payload(vol))
        assert header["n"] == 30 and header["frame_ms"] == 40.0 and header["dtype"] == "i2"
        assert header["rate_text"] == "25 frames per second, as acquired"
        np.testing.assert_array_equal(np.stack(frames), vol.voxels)
        assert "lengths are in pixels, not mm" in header["note"] and header["mm"] is False

    def test_header_alone_when_the_browser_has_the_frames(self):
        data = frame_payload(_loop(), with_frames=False)
        header, frames = _decode(data)
        assert frames == [] and len(data) < 4000

    def test_colour_goes_as_png_with_no_window(self):
        vol = _colour_loop()
        header, frames = _decode(frame_payload(vol))
        assert header["colour"] is True and header["dtype"] is None
        np.testing.assert_array_equal(np.stack(frames), vol.rgb)

    def test_projection_states_its_calibration_and_inversion(self):
        header, frames = _decode(frame_payload(_cr()))
        assert header["invert"] is True and (header["center"], header["width"]) == (500, 1000)
        assert header["mm"] is True and header["src_row_mm"] == 0.2
        assert header["note"].startswith("Lengths in mm at the detector (Imager Pixel Spacing)")
        assert frames[0][0, 0] == 0 and frames[0][0, 59] == 1000

    def test_gallery_image_alone_and_cropped(self):
        vol = _gallery()
        header, frames = _decode(frame_payload(vol, 1))
        assert header["n"] == 1 and frames[0].shape == (30, 16, 3) and np.all(frames[0] == 200)
        header, frames = _decode(frame_payload(vol, 0))
        assert frames[0].shape == (10, 20, 3) and np.all(frames[0] == 7)  # grey, in a gallery holding colour

    def test_a_large_projection_goes_at_a_reduced_size(self):
        assert display_step(3000, 4000) == 2 and display_step(2048, 2048) == 1
        assert display_step(512, 512, frames=96) == 1 and display_step(1024, 1024, frames=96) == 2
        pixels = (np.arange(3000 * 4000, dtype=np.uint32) % 4096).astype(np.uint16).reshape(3000, 4000)
        vol = _load(("big.dcm", image_file(pixels, modality="DX", extra={"PixelSpacing": [0.1, 0.1]})))[0]
        header, frames = _decode(frame_payload(vol))
        assert frames[0].shape == (1500, 2000) and header["scale"] == 2
        np.testing.assert_array_equal(frames[0], vol.voxels[0, ::2, ::2])
        assert "Shown at 1/2 of its 4000 x 3000 pixels" in header["note"]


def _page(name: str, vol):
    at = page_test(PAGES[name])
    at.session_state["study"] = Study(volumes=[vol], skipped=[], source="test")
    at.session_state["current_series"] = 0
    return at.run()


class TestPagesOnEachKind:
    @pytest.mark.parametrize("kind", list(KINDS))
    def test_explorer_shows_the_image_view(self, kind):
        at = _page("1_Volume_explorer.py", KINDS[kind]())
        assert not at.exception
        text = page_text(at)
        expected = {"loop": "A loop of 30 frames, 64 x 48 pixels, 25 frames per second.",
                    "colour loop": "A loop of 3 frames in colour", "projection": "A projection image, 60 x 40 pixels.",
                    "gallery": "A gallery of 2 images in colour without a position"}[kind]
        assert expected in text
        (element,) = at.get("bidi_component")
        header, frames = _decode(element.proto.bytes)
        assert frames  # the first run sends the frames
        at.run()
        (element,) = at.get("bidi_component")
        assert _decode(element.proto.bytes)[1] == []  # later runs: the header alone

    def test_frames_reserve_their_memory_first(self):
        from core.memory import MemoryBudget, server_budget, set_server_budget

        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=100_000, session_bytes=100_000))
        try:
            at = _page("1_Volume_explorer.py", _loop())  # 30 x 48 x 64 int16: 184,320 bytes
        finally:
            set_server_budget(before)
        assert not at.exception and not at.get("bidi_component")
        message = at.error[0].value
        assert message.startswith("The image cannot be shown now: refused") and "the frames for the browser" in message

    def test_gallery_click_shows_that_image(self):
        at = _page("1_Volume_explorer.py", _gallery())
        at.button(key="explorer_gallery_1").click().run()
        assert not at.exception and "**Image 2 of 2**, 16 x 30 pixels" in page_text(at)
        (element,) = at.get("bidi_component")
        header, frames = _decode(element.proto.bytes)
        assert frames[0].shape == (30, 16, 3)

    @pytest.mark.parametrize("kind", list(KINDS))
    def test_3d_page_needs_a_volume(self, kind):
        at = _page("3_Isosurface_3D.py", KINDS[kind]())
        assert not at.exception
        assert "A 3D surface needs a volume (a stack of slices)" in page_text(at)

    @pytest.mark.parametrize("kind", list(KINDS))
    def test_ct_face_check_needs_a_volume(self, kind):
        at = _page("4_Face_detection.py", KINDS[kind]())
        assert not at.exception
        assert "The privacy check of CT needs a volume (a stack of slices)" in page_text(at)

    @pytest.mark.parametrize(("kind", "message"), [
        ("colour loop", "The histogram works on grey values"),
        ("gallery", "The histogram needs a volume (a stack of slices) or a loop or a projection image"),
    ])
    def test_histogram_says_why_not(self, kind, message):
        at = _page("2_HU_histogram.py", KINDS[kind]())
        assert not at.exception and message in page_text(at)

    @pytest.mark.parametrize("kind", ["loop", "projection"])
    def test_histogram_works_on_grey_loops_and_projections(self, kind):
        at = _page("2_HU_histogram.py", KINDS[kind]())
        assert not at.exception
        assert "needs" not in page_text(at) and at.get("plotly_chart")


def test_series_table_shows_kind_and_preview():
    at = app_test()
    at.session_state["study"] = Study(volumes=[_loop(), _cr(), _gallery()], skipped=[], source="test")
    at.run()
    assert not at.exception
    table = table_with(at, "Kind")
    assert list(table["Kind"]) == ["US loop", "CR projection", "CT colour gallery"]
    assert all(str(url).startswith("data:image/png;base64,") for url in table["Preview"])
    # Frames of a loop, one projection image, two gallery images; no slice spacing for 2-D kinds.
    assert list(table["Images"]) == ["30 frames", "1 image", "2 images"]
    # No slice geometry for a 2-D kind: the panel under the table gives the chosen image's pixel spacing.
    assert "Geometry" not in table.columns and "Geometry" not in page_text(at)
    assert "- Pixel spacing: in pixels" in page_text(at)


def test_the_link_to_the_explorer_fits_the_kind():
    from dashboard.kinds import next_step

    single = _load(("c.dcm", image_file(np.zeros((4, 6, 3), np.uint8), photometric="RGB")))[0]
    assert [next_step(v) for v in (_loop(), _cr(), _gallery(), single)] == [
        "Next: play this loop in the Volume explorer", "Next: look at this image in the Volume explorer",
        "Next: browse these images in the Volume explorer", "Next: look at this image in the Volume explorer"]
    at = app_test()
    at.session_state["study"] = Study(volumes=[_loop()], skipped=[], source="test")
    at.run()
    assert [link.proto.label for link in at.get("page_link") if link.proto.label.startswith("Next")] == [
        "Next: play this loop in the Volume explorer"]


@pytest.mark.parametrize(("kind", "facts"), [
    ("loop", ["- **Kind**: loop", "- **Frames**: 30 frames of 64 x 48 pixels", "- **Rate**: 25 frames per second",
              "- **Pixel spacing**: in pixels (the file gives none)"]),
    ("colour loop", ["- **Values**: colour", "- **Frames**: 3 frames of 10 x 8 pixels",
                     "- **Rate**: not given in the file"]),
    ("projection", ["- **Kind**: projection", "- **Size**: 60 x 40 pixels",
                    "- **Pixel spacing**: 0.2 x 0.2 mm at the detector"]),
    ("gallery", ["- **Kind**: colour gallery", "- **Images**: 2 images", "- **Size**: up to 20 x 30 pixels"]),
])
def test_sidebar_facts_fit_the_kind(kind, facts):
    at = _page("1_Volume_explorer.py", KINDS[kind]())
    text = "\n".join(m.value for m in at.sidebar.markdown)
    for fact in facts:
        label, value = fact.split(": ", 1)
        assert f"{label}: {md_escape(value)}" in text
    assert "Orientation" not in text and "Voxels" not in text and "1 x 1 x 1" not in text


class TestWords:
    def test_labels_and_sentences(self):
        from dashboard.kinds import describe, kind_label

        single = _load(("c.dcm", image_file(np.zeros((4, 6, 3), np.uint8), photometric="RGB")))[0]
        assert (kind_label(single), describe(single)) == (
            "colour image", "A single image in colour without a position in the patient, 6 x 4 pixels.")
        assert (kind_label(_loop()), kind_label(_colour_loop()), kind_label(_cr())) == (
            "loop", "colour loop", "projection")
        assert describe(_cr()) == "A projection image, 60 x 40 pixels."


@pytest.mark.parametrize("kind,title", [("loop", "Histogram of US values (stored units)"),
                                        ("projection", "Histogram of CR values (stored units)")])
def test_the_histogram_page_speaks_the_series_units(kind, title):
    at = _page("2_HU_histogram.py", KINDS[kind]())
    assert not at.exception
    assert [t.value.replace("\\", "") for t in at.title] == [title]  # Markdown-escaped: the unit is from the file
    intro = at.caption[0].value.replace("\\", "")
    assert intro == "How many pixels hold each value, in stored units. These are not Hounsfield units, so there " \
                    "are no tissue bands."
    assert "kVp" not in page_text(at) and "HU histogram" not in page_text(at)
