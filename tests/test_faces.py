"""Face detection, anonymisation and skin renderings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from core import Volume, face_check, sample_ct
from core.face_check import LIGHTS, SETTINGS, Detection, face_verdict, has_head, privacy_check
from core.faces import (
    CASCADES,
    _classifier,
    blur_regions,
    detect_eyes,
    detect_faces,
    to_gray,
)
from core.skin import render_skin
from tests.helpers import page_test, visits_to_other_pages

TRUE_FACE = (172, 60, 110, 110)  # the astronaut's face, x y w h (by eye, generous)


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


class TestDetectFaces:
    def test_astronaut_one_face_on_her_face(self):
        boxes = detect_faces(skimage.data.astronaut())
        assert boxes.shape == (1, 4) and boxes.dtype.kind == "i"
        assert _iou(boxes[0], TRUE_FACE) > 0.5

    @pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
    def test_grey_and_any_dtype(self, dtype):
        scale = 3 if dtype != np.uint8 else 1
        grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY).astype(dtype) * scale
        boxes = detect_faces(grey)
        assert len(boxes) == 1 and _iou(boxes[0], TRUE_FACE) > 0.5

    def test_large_photo_maps_boxes_back(self):
        big = cv2.resize(skimage.data.astronaut(), (1024, 1024))
        boxes = detect_faces(big)
        assert len(boxes) == 1 and _iou(boxes[0] / 2, TRUE_FACE) > 0.5

    @pytest.mark.parametrize("image", [np.zeros((300, 300), np.uint8),
                                       np.random.default_rng(0).integers(0, 256, (300, 300)).astype(np.uint8)])
    def test_blank_and_noise_have_none(self, image):
        boxes = detect_faces(image)
        assert boxes.shape == (0, 4)

    def test_blurred_face_is_no_longer_found(self):
        img = skimage.data.astronaut()
        boxes = detect_faces(img)
        for method in ("blur", "pixelate"):
            hidden = blur_regions(img, boxes, method=method)
            assert detect_faces(hidden).shape == (0, 4), method
            # Outside the box nothing changed.
            assert np.array_equal(hidden[400:], img[400:])

    @pytest.mark.parametrize("name", sorted(CASCADES))
    def test_each_cascade_loads(self, name):
        assert not _classifier(name).empty()

    def test_eyes_in_the_astronaut(self):
        img = skimage.data.astronaut()
        eyes = detect_eyes(img, detect_faces(img)[0])
        assert len(eyes) == 2

    def test_errors(self):
        with pytest.raises(ValueError, match="cascade must be one of"):
            detect_faces(np.zeros((40, 40), np.uint8), cascade="smile")
        with pytest.raises(ValueError, match="scale_factor"):
            detect_faces(np.zeros((40, 40), np.uint8), scale_factor=1.0)
        with pytest.raises(ValueError, match="method"):
            blur_regions(np.zeros((4, 4), np.uint8), [[0, 0, 2, 2]], method="smudge")

    def test_to_gray(self):
        assert to_gray(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]


def _head(tilt_deg=0.0):
    nz, ny, nx = 120, 200, 200
    dz, dy, dx = 2.0, 1.0, 1.0
    tilt = np.tan(np.radians(tilt_deg))
    positions = np.array([[-100.0, -100.0 + k * dz * tilt, -120 + k * dz] for k in range(nz)])
    z = (np.arange(nz) * dz - 120)[:, None, None]
    y = (np.arange(ny) * dy - 100)[None, :, None] + (np.arange(nz) * dz * tilt)[:, None, None]
    x = (np.arange(nx) * dx - 100)[None, None, :]
    head = (x / 70) ** 2 + (y / 90) ** 2 + (z / 100) ** 2 <= 1
    vox = np.where(head, 40, -1000).astype(np.int16)
    return Volume(voxels=vox, spacing=(dz, dy, dx), series_uid="h", modality="CT", units="HU", positions=positions)


class TestRenderSkin:
    def test_head_silhouette_is_the_projected_ellipse(self):
        img = render_skin(_head())
        # 140 mm wide and 200 mm tall at 1 mm per pixel; the front view shows the x-z ellipse.
        h, w = img.shape
        yy, xx = np.mgrid[:h, :w]
        z = 120 - (yy + 0.5) * 240 / h  # rows from the top (head up)
        x = (xx + 0.5) * 200 / w - 100
        expected = (x / 70) ** 2 + (z / 100) ** 2 <= 1
        got = img > 0
        iou = (got & expected).sum() / (got | expected).sum()
        assert iou > 0.95
        # Lit from the front: the middle of the face is brighter than its rim.
        assert img[h // 2, w // 2] > img[h // 2, int(w * 0.2)]

    def test_gantry_tilt_does_not_distort_the_face(self):
        straight = render_skin(_head()) > 0
        tilted = render_skin(_head(tilt_deg=20)) > 0
        h = min(straight.shape[0], tilted.shape[0])
        w = min(straight.shape[1], tilted.shape[1])
        iou = (straight[:h, :w] & tilted[:h, :w]).sum() / (straight[:h, :w] | tilted[:h, :w]).sum()
        assert iou > 0.9

    def test_turned_view_is_wider_for_a_deep_head(self):
        front = (render_skin(_head()) > 0).sum(axis=1).max()
        turned = (render_skin(_head(), azimuth=60) > 0).sum(axis=1).max()
        assert turned > front  # 90 mm deep vs 70 mm wide: a turned head shows more of its depth

    def test_head_or_not(self):
        assert has_head(_head())[0]
        ok, reason = has_head(sample_ct())
        assert not ok and reason.startswith("no head in this volume")



class TestPrivacyCheck:
    def test_reports_every_combination(self):
        ev = privacy_check(_head())
        assert [(d.azimuth, d.lighting, d.settings) for d in ev.detections] == [
            (az, light, settings) for az in (-25.0, 0.0, 25.0) for light in LIGHTS for settings in SETTINGS]
        assert list(ev.renders) == [(az, light) for az in (-25.0, 0.0, 25.0) for light in LIGHTS]
        assert all(img.dtype == np.uint8 and img.ndim == 2 and img.any() for img in ev.renders.values())
        assert (ev.level, ev.verdict) == face_verdict(ev.detections)

    def test_a_face_in_every_rendering_is_likely(self, monkeypatch):
        # The renderer replaced by a photo: the detectors, their wiring and the verdict are what is tested.
        photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
        monkeypatch.setattr(face_check, "render_skin", lambda *a, **k: photo)
        ev = privacy_check(_head())
        assert all(d.frontal_faces >= 1 for d in ev.detections)
        assert any(d.eyes >= 1 for d in ev.detections)
        assert ev.level == "likely"
        assert ev.verdict.startswith("A face was found in 12 of 12 renderings, at -25°, +0° and +25°, with eyes")

    def test_a_blank_rendering_finds_nothing(self, monkeypatch):
        monkeypatch.setattr(face_check, "render_skin", lambda *a, **k: np.zeros((240, 200), np.uint8))
        ev = privacy_check(_head())
        assert not any(d.found_face for d in ev.detections)
        assert ev.level == "not found" and ev.verdict.startswith("No face found in 12 renderings.")


def _detection(azimuth, *, frontal=0, eyes=0, profile=0):
    return Detection(azimuth, "front light", "as for photos", frontal, eyes, profile)


class TestFaceVerdict:
    def test_nothing_found(self):
        assert face_verdict([_detection(0.0), _detection(25.0)])[0] == "not found"

    def test_two_angles_with_eyes_is_likely(self):
        level, words = face_verdict([_detection(-25.0, frontal=1, eyes=2), _detection(25.0, profile=1),
                                     _detection(0.0)])
        assert level == "likely"
        assert words.startswith("A face was found in 2 of 3 renderings, at -25° and +25°, with eyes")

    def test_one_angle_with_eyes_is_possible(self):
        level, words = face_verdict([_detection(0.0, frontal=1, eyes=2), _detection(0.0, frontal=1), _detection(25.0)])
        assert level == "possible" and "2 of 3 renderings, at +0° only:" in words

    def test_two_angles_without_eyes_is_possible(self):
        level, words = face_verdict([_detection(-25.0, frontal=1), _detection(25.0, profile=2)])
        assert level == "possible" and "at -25° and +25°, without eyes" in words

    def test_three_angles_without_eyes_names_all_three(self):
        # The real GE head CT's case: frontal faces at -25 and 0 degrees, a profile at +25.
        level, words = face_verdict([_detection(0.0, frontal=1), _detection(-25.0, frontal=2),
                                     _detection(25.0, profile=1), _detection(25.0)])
        assert level == "possible" and "3 of 4 renderings, at -25°, +0° and +25°, without eyes" in words


class TestRenderingFigures:
    """The renderings as the page shows them: the detectors' boxes drawn, one size for all."""

    @pytest.fixture(scope="class")
    def evidence(self):
        from core.head_sample import head_ct

        return privacy_check(head_ct())

    def test_one_size(self, evidence):
        from dashboard.faces_ui import rendering_figures

        figures = rendering_figures(evidence)
        assert list(figures) == list(evidence.renders)
        shapes = {img.shape for img in figures.values()}
        h = max(img.shape[0] for img in evidence.renders.values())
        w = max(img.shape[1] for img in evidence.renders.values())
        assert shapes == {(h, w, 3)}
        assert len({img.shape for img in evidence.renders.values()}) > 1  # the turned views are wider

    def test_boxes_are_drawn_where_the_detector_found_them(self, evidence):
        from dashboard.faces_ui import FRONTAL_COLOR, PROFILE_COLOR, rendering_figures

        figures = rendering_figures(evidence)
        h = max(img.shape[0] for img in evidence.renders.values())
        w = max(img.shape[1] for img in evidence.renders.values())
        drawn = 0
        for d in evidence.detections:
            img = evidence.renders[(d.azimuth, d.lighting)]
            top, left = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
            fig = figures[(d.azimuth, d.lighting)]
            for x, y, bw, bh in d.frontal_boxes + d.profile_boxes:
                # The box's corners are drawn in a detector's colour (boxes may overlap), not the grey.
                for px, py in ((x, y), (x + bw - 1, y), (x, y + bh - 1), (x + bw - 1, y + bh - 1)):
                    assert tuple(fig[top + py, left + px]) in {FRONTAL_COLOR, PROFILE_COLOR}
                drawn += 1
            assert len(d.frontal_boxes) == d.frontal_faces and len(d.profile_boxes) == d.profile_faces
        assert drawn >= 1  # the built-in head's face is found
        # Away from the boxes the rendering is unchanged.
        d = evidence.detections[0]
        img = evidence.renders[(d.azimuth, d.lighting)]
        top, left = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
        fig = figures[(d.azimuth, d.lighting)]
        assert (fig[top, left:left + 3] == img[0, :3, None]).all()


PAGE = Path(__file__).resolve().parents[1] / "pages" / "4_Face_detection.py"


class TestPage:
    def test_sample_photo_and_settings(self):
        at = page_test(PAGE).run()
        assert not at.exception
        assert any(m.value.startswith("**1 face found**") for m in at.markdown)
        at.selectbox(key="faces_sample").set_value("Coffee cup").run()
        assert any(m.value.startswith("**0 faces found**") for m in at.markdown)
        at.selectbox(key="faces_sample").set_value("Astronaut (Eileen Collins)").run()
        at.selectbox(key="faces_cascade").set_value("frontalface_alt2").run()
        at.slider(key="faces_neighbors").set_value(3).run()
        at.toggle(key="faces_eyes").set_value(True).run()
        assert not at.exception
        assert at.dataframe[0].value["Eyes"][0] == 2

    def test_upload_png_and_a_bad_file(self):
        at = page_test(PAGE).run()
        at.radio(key="faces_source").set_value("Upload").run()
        ok, png = cv2.imencode(".png", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
        at.file_uploader(key="faces_upload").set_value(("me.png", png.tobytes(), "image/png")).run()
        assert not at.exception and any(m.value.startswith("**1 face found**") for m in at.markdown)
        at.file_uploader(key="faces_upload").set_value(("me.png", b"not an image", "image/png")).run()
        assert not at.exception and at.error and "not a PNG, JPEG or DICOM image" in at.error[0].value

    def _upload(self, name, data, *, show_phi=False):
        at = page_test(PAGE).run()
        if show_phi:
            at.toggle(key="sidebar_show_phi").set_value(True).run()
        at.radio(key="faces_source").set_value("Upload").run()
        at.file_uploader(key="faces_upload").set_value((name, data, "application/dicom")).run()
        assert not at.exception
        return at

    def test_32_bit_unsigned_dicom_is_shown(self):
        from tests.factory import ct_slice

        arr = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 100_000
        at = self._upload("x.dcm", ct_slice(arr, position=(0, 0, 0), signed=False, intercept=0.0, modality="OT"))
        assert not at.error and any(m.value.startswith("**0 faces found**") for m in at.markdown)

    def test_truncated_dicom_is_explained_in_words_and_its_name_hidden(self):
        from tests.factory import ct_slice

        data = ct_slice(np.zeros((64, 64), np.int16), position=(0, 0, 0))
        at = self._upload("SMITH^JOHN_head.dcm", data[: len(data) // 2])
        message = at.error[0].value
        assert "cut short" in message and "The uploaded file" in message
        for leaked in ("SMITH", "Error", "bytes of pixel data is less", "\\x", "b'"):
            assert leaked not in message
        at.toggle(key="sidebar_show_phi").set_value(True).run()
        assert "SMITH" in at.error[0].value  # named once the visitor reveals PHI

    def test_a_photo_over_the_memory_budget_is_refused_in_words(self):
        from core.memory import MemoryBudget, server_budget, set_server_budget

        ok, png = cv2.imencode(".png", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
        saved = server_budget()
        set_server_budget(MemoryBudget(total_bytes=1_000_000, session_bytes=1_000_000))
        try:
            at = self._upload("me.png", png.tobytes())
        finally:
            set_server_budget(saved)
        assert at.error and "this session may hold at most" in at.error[0].value

    def test_ct_check_on_the_built_in_head(self):
        at = page_test(PAGE).run()  # the chest sample is loaded: no head in it
        at.radio(key="faces_ct_source").set_value("Built-in synthetic head").run()
        at.button(key="faces_check_button").click().run()
        assert not at.exception
        assert at.session_state["faces_ct_check"].evidence.level == "likely"
        assert any("A face was found" in e.value for e in at.error)

    def test_ct_check_on_a_head(self):
        from dashboard.state import Study

        at = page_test(PAGE)
        at.session_state["study"] = Study(volumes=[_head()], skipped=[], source="test")
        at.run()
        at.button(key="faces_check_button").click().run()
        assert not at.exception
        evidence = next(df.value for df in at.dataframe if "Detector settings" in df.value.columns)
        assert len(evidence) == 12 and list(evidence.columns) == [
            "View", "Lighting", "Detector settings", "Frontal faces", "Eyes in the best face", "Profile faces"]
        assert sorted(set(evidence["View"])) == ["+0°", "+25°", "-25°"]
        ev = at.session_state["faces_ct_check"].evidence
        assert list(evidence["Frontal faces"]) == [d.frontal_faces for d in ev.detections]
        assert len(at.get("image")) >= 1 + 6


class TestPageSettings:
    def test_every_detector_is_named_in_words(self):
        from core.faces import CASCADES
        from dashboard.faces_ui import DETECTORS

        assert set(DETECTORS) == set(CASCADES) - {"eye"}
        assert all("_" not in label for label in DETECTORS.values())

    def test_settings_survive_a_visit_to_every_other_page(self):
        at = page_test(PAGE).run()
        values = {"faces_sample": "Cameraman", "faces_cascade": "profileface", "faces_scale": 1.2,
                  "faces_neighbors": 3, "faces_min_size": 40, "faces_equalize": True, "faces_eyes": True,
                  "faces_method": "pixelate", "faces_strength": 2.0, "faces_extra_boxes": "1, 2, 3, 4",
                  "faces_ct_source": "Built-in synthetic head"}
        kinds = {"faces_sample": "selectbox", "faces_cascade": "selectbox", "faces_scale": "slider",
                 "faces_neighbors": "slider", "faces_min_size": "slider", "faces_equalize": "toggle",
                 "faces_eyes": "toggle", "faces_method": "radio", "faces_strength": "slider",
                 "faces_extra_boxes": "text_area", "faces_ct_source": "radio"}
        for key, value in values.items():
            getattr(at, kinds[key])(key=key).set_value(value).run()
        assert not at.exception
        for other in visits_to_other_pages(at, PAGE):
            assert not at.exception
            got = {key: getattr(at, kinds[key])(key=key).value for key in values}
            assert got == values, other.name
        assert "(s)" not in "".join(str(i.value) for i in at.caption)
