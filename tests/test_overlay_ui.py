"""dashboard.overlay_ui in the real Streamlit runtime (AppTest): sources, uploads, legend, messages."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from core import load_series
from core.export import nifti_affine
from dashboard import state
from tests.factory import segmentable_series, segmentation_file
from tests.helpers import page_text

SCRIPT = """
import streamlit as st
from dashboard import state, overlay_ui
state.init()
vol = state.current_volume()
ov = overlay_ui.overlay_ui(vol)
st.session_state["shown"] = None if ov is None else (ov.labels.source, ov.opacity, ov.outline,
                                                    ov.labels.labels.copy(), dict(ov.labels.names))
"""
SHAPE = (4, 12, 10)


def _app() -> AppTest:
    return AppTest.from_string(SCRIPT, default_timeout=60)


def _files(seed: int = 0) -> list[tuple[str, bytes]]:
    hu = np.random.default_rng(seed).integers(-1000, 500, SHAPE).astype(np.int16)
    return segmentable_series(hu, spacing=(2.0, 0.5, 0.75), names=lambda k: f"s{seed}/{k}.dcm")


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:3, 2:6, 3:8] = 1
    return mask


def _seg(files: list[tuple[str, bytes]]) -> bytes:
    return segmentation_file(files, _mask(), {1: "Tumour"}, description="Secret tumour outline")


def _with_study(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    result = load_series(files)
    at.session_state[state.STUDY] = state.Study(volumes=result.volumes, skipped=result.skipped, source="upload",
                                                segmentations=result.segmentations)
    return at


class TestSources:
    def test_sample_offers_its_labels_and_the_lungs(self):
        at = _app().run()
        assert not at.exception
        box = at.selectbox(key="explorer_overlay_source")
        assert box.options == ["None", "Sample tissue labels", "Lungs (computed on demand)"]
        assert at.session_state["shown"] is None
        box.set_value("sample").run()
        assert not at.exception
        source, opacity, outline, labels, names = at.session_state["shown"]
        assert (source, opacity, outline) == ("Sample tissue labels", 0.4, False)
        assert names[6] == "Lung"
        legend = at.dataframe[0].value
        assert list(legend.columns) == ["Colour", "Label", "Voxels", "Volume (mL)"]
        assert int(legend.set_index("Label").loc["Lung", "Voxels"]) == int(np.count_nonzero(labels == 6))

    def test_lungs_are_computed_when_chosen(self):
        at = _app().run()
        at.selectbox(key="explorer_overlay_source").set_value("lungs").run()
        assert not at.exception
        source, *_, names = at.session_state["shown"]
        assert source == "Lungs (computed)" and names == {1: "Right lung", 2: "Left lung"}

    def test_over_the_memory_budget_it_says_so_and_tries_again_later(self):
        from core.memory import MemoryBudget, server_budget, set_server_budget

        at = _app().run()
        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=2**20, session_bytes=2**20))
        try:
            at.selectbox(key="explorer_overlay_source").set_value("sample").run()
        finally:
            set_server_budget(before)
        assert not at.exception
        assert any(e.value.startswith("The overlay was not made: refused: the overlay's label map would need 8 MB")
                   for e in at.error)
        assert at.session_state["shown"] is None
        at.run()  # the memory is there now
        assert at.session_state["shown"][0] == "Sample tissue labels"

    def test_seg_of_the_study_is_offered_on_its_series_only(self):
        files, other = _files(0), _files(1)
        at = _with_study(_app(), other + files + [("seg.dcm", _seg(files))]).run()
        assert not at.exception
        s = at.session_state[state.STUDY]
        index = [v.series_uid for v in s.volumes].index(pydicom.dcmread(io.BytesIO(files[0][1])).SeriesInstanceUID)
        at.session_state[state.CURRENT] = 1 - index
        at.run()
        assert "DICOM SEG 1" not in at.selectbox(key="explorer_overlay_source").options
        at.session_state[state.CURRENT] = index
        at.run()
        box = at.selectbox(key="explorer_overlay_source")
        assert "DICOM SEG 1" in box.options
        assert "Secret" not in page_text(at)  # the SEG's series description is PHI, hidden by default
        box.set_value("seg1").run()
        assert not at.exception
        source, *_, labels, names = at.session_state["shown"]
        np.testing.assert_array_equal(labels, _mask())
        assert names == {1: "Tumour"}


class TestUploads:
    @pytest.fixture()
    def study_app(self):
        files = _files(0)
        at = _with_study(_app(), files).run()
        return at, files

    def _upload(self, at: AppTest, name: str, data: bytes) -> AppTest:
        return at.file_uploader(key="explorer_overlay_upload").set_value([(name, data, "application/octet-stream")]
                                                                         ).run()

    def test_nifti_with_the_series_affine_is_shown(self, study_app):
        at, _ = study_app
        vol = at.session_state[state.STUDY].volumes[0]
        data = nib.Nifti1Image(_mask().transpose(2, 1, 0).copy(), nifti_affine(vol)).to_bytes()
        self._upload(at, "labels.nii", data)
        assert not at.exception
        assert at.selectbox(key="explorer_overlay_source").value == "upload"
        source, *_, labels, names = at.session_state["shown"]
        assert source == "NIfTI label map" and names == {1: "Label 1"}
        np.testing.assert_array_equal(labels, _mask())

    def test_nifti_with_another_affine_is_refused_in_words(self, study_app):
        at, _ = study_app
        vol = at.session_state[state.STUDY].volumes[0]
        affine = nifti_affine(vol)
        affine[1, 3] += 3.0
        self._upload(at, "labels.nii", nib.Nifti1Image(_mask().transpose(2, 1, 0).copy(), affine).to_bytes())
        assert not at.exception
        assert any("affine does not match this series" in e.value for e in at.error)
        assert at.session_state["shown"] is None

    def test_removing_the_upload_removes_its_label_map(self, study_app):
        at, _ = study_app
        vol = at.session_state[state.STUDY].volumes[0]
        self._upload(at, "labels.nii", nib.Nifti1Image(_mask().transpose(2, 1, 0).copy(),
                                                       nifti_affine(vol)).to_bytes())
        assert at.session_state["shown"] is not None
        at.file_uploader(key="explorer_overlay_upload").set_value(None).run()
        assert not at.exception
        assert at.session_state["shown"] is None
        assert "Uploaded label map" not in at.selectbox(key="explorer_overlay_source").options

    def test_seg_of_no_loaded_series_says_so(self, study_app):
        at, _ = study_app
        self._upload(at, "seg.dcm", _seg(_files(3)))
        assert not at.exception
        assert any("matches none of the loaded series" in e.value for e in at.error)
        assert "Secret" not in page_text(at)  # its series description is PHI

    def test_seg_of_another_loaded_series_names_that_series(self):
        files, other = _files(0), _files(1)
        at = _with_study(_app(), files + other).run()
        s = at.session_state[state.STUDY]
        other_uid = pydicom.dcmread(io.BytesIO(other[0][1])).SeriesInstanceUID
        j = [v.series_uid for v in s.volumes].index(other_uid)
        at.session_state[state.CURRENT] = 1 - j
        self._upload(at.run(), "seg.dcm", _seg(other))
        assert not at.exception
        assert any(f"lies on series {j + 1}, not on the current one" in e.value for e in at.error)

    def test_junk_is_refused_in_words(self, study_app):
        at, _ = study_app
        self._upload(at, "x.nii.gz", b"\x1f\x8b" + b"\0" * 50)
        assert not at.exception
        assert [e.value for e in at.error] and "Traceback" not in page_text(at)


class TestFirstPage:
    def test_a_seg_uploaded_with_the_study_is_kept_and_listed(self):
        from tests.helpers import app_test

        files, other = _files(0), _files(1)
        upload = [(n, d, "application/dicom") for n, d in other + files + [("seg.dcm", _seg(files))]]
        at = app_test().run()
        at.file_uploader(key="load_files_0").set_value(upload).run()
        assert not at.exception
        s = at.session_state[state.STUDY]
        assert len(s.volumes) == 2 and len(s.segmentations) == 1 and s.skipped == []
        index = [v.series_uid for v in s.volumes].index(pydicom.dcmread(io.BytesIO(files[0][1])).SeriesInstanceUID)
        text = page_text(at).replace("\\", "")  # markdown escapes
        assert "Segmentations in the study (1)" in text
        assert f"DICOM SEG 1: lies on series {index + 1}" in text
        assert "Secret" not in text


    def test_a_seg_alone_is_listed_as_not_used_and_why(self):
        from tests.helpers import app_test

        at = app_test().run()
        at.file_uploader(key="load_files_0").set_value([("seg.dcm", _seg(_files(0)), "application/dicom")]).run()
        assert not at.exception
        assert at.session_state[state.STUDY].is_sample  # the open study stays
        assert "a segmentation (DICOM SEG) without its images" in page_text(at)


class TestHistogramScope:
    def test_a_label_of_the_overlay_is_counted_like_label_stats(self):
        from core.numbers import decimal
        from core.overlay import label_stats, sample_tissue_labels
        from core.sample import sample_ct
        from tests.helpers import ROOT, page_test, table_with

        at = page_test(ROOT / "pages" / "2_HU_histogram.py")
        at.session_state["explorer_overlay_source"] = "sample"  # chosen on the explorer, kept across pages
        at.run()
        at.radio(key="histogram_scope").set_value("A label of the overlay").run()
        assert not at.exception
        at.selectbox(key="histogram_overlay_label").set_value("Liver").run()
        assert not at.exception
        vol = sample_ct()
        truth = label_stats(vol, sample_tissue_labels(vol), 25)
        caption = next(c.value for c in at.caption if "voxels counted" in c.value)
        assert caption.startswith(f"{truth.n:,} voxels counted; 0 padding voxels")
        stats = table_with(at, "Statistic").set_index("Statistic")
        for row, value in (("Mean", truth.mean), ("SD", truth.sd), ("Minimum", truth.min), ("Maximum", truth.max)):
            assert stats.loc[row, "Value"] == f"{decimal(value, places=1)} HU"

    def test_without_an_overlay_it_says_where_to_choose_one(self):
        from tests.helpers import ROOT, page_test

        at = page_test(ROOT / "pages" / "2_HU_histogram.py").run()
        at.radio(key="histogram_scope").set_value("A label of the overlay").run()
        assert not at.exception
        assert any("No segmentation overlay with labels yet" in i.value for i in at.info)
