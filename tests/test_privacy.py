"""De-identification (PS3.15 Basic Profile action classes), the tag browser rows, PHI masking."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from core import load_series, sample_ct
from core.deid import deidentified_zip, deidentify
from core.dicom_writer import series_datasets
from core.privacy import MASK, SeriesIdentity, display_description, is_safe_description, series_identity
from core.summary import summary_json
from core.tags import filter_rows, tag_rows
from tests.factory import ct_series, ramp_volume

PHI = {
    "PatientName": "SECRET^PATIENT",
    "PatientBirthDate": "19700101",
    "StudyDate": "20240115",
    "InstitutionName": "General Hospital",
    "AccessionNumber": "ACC123",
    "ReferringPhysicianName": "DR^WHO",
    "SeriesDescription": "CHEST secret protocol",
    "OperatorsName": "TECH^ONE",
    "StudyID": "S-77",
}


def _volume(n=4, **extra):
    files = ct_series(ramp_volume((n, 16, 12)), patient_name=PHI["PatientName"],
                      extra={k: v for k, v in {**PHI, **extra}.items() if k != "PatientName"})
    return load_series(files).volumes[0]


@pytest.fixture
def exported():
    vol = _volume()
    data, report = deidentified_zip(vol)
    zf = zipfile.ZipFile(io.BytesIO(data))
    dss = [pydicom.dcmread(io.BytesIO(zf.read(n))) for n in sorted(zf.namelist())]
    return vol, data, report, dss


class TestProfileActions:
    def test_remove_x(self, exported):
        _, _, _, dss = exported
        for ds in dss:
            assert "SeriesDescription" not in ds  # X in the 2024b tables
            # X/Z/D: removed, emptied or a dummy, never the original.
            assert str(ds.get("OperatorsName", "")) in ("", "ANONYMIZED")

    def test_empty_z(self, exported):
        _, _, _, dss = exported
        for ds in dss:
            assert ds.PatientName == "" and ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""

    def test_dummy_d(self, exported):
        _, _, _, dss = exported
        for ds in dss:
            assert ds.InstitutionName in ("", "ANONYMIZED") and "General" not in str(ds.InstitutionName)

    def test_uids_remapped_consistently(self, exported):
        vol, _, report, dss = exported
        series = {str(ds.SeriesInstanceUID) for ds in dss}
        study = {str(ds.StudyInstanceUID) for ds in dss}
        assert len(series) == 1 and len(study) == 1
        assert series != {vol.series_uid} and study != {"1.2.3.4.5"}
        assert len({str(ds.SOPInstanceUID) for ds in dss}) == len(dss)
        assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in dss)
        assert str(dss[0].SOPClassUID) == pydicom.uid.CTImageStorage  # class UIDs are kept
        assert report.uids_remapped == 2 + len(dss)  # study, series and one per instance

    def test_no_phi_anywhere_in_the_files(self, exported):
        _, data, _, dss = exported
        raw = b"".join(zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
        for value in PHI.values():
            assert value.encode() not in raw, value
        assert all(ds.PatientIdentityRemoved == "YES" for ds in dss)

    def test_private_tags_removed_and_library_map_emptied(self):
        from dicomanonymizer import simpledicomanonymizer as sda

        vol = _volume()
        dss = series_datasets(vol)
        block = dss[0].private_block(0x0011, "ACME", create=True)
        block.add_new(0x01, "LO", "SECRET^PATIENT")
        deidentify(dss)
        assert not any(e.tag.is_private for e in dss[0])
        assert sda.dictionary == {}

    def test_uids_in_sequences_are_remapped(self):
        vol = _volume()
        dss = series_datasets(vol)
        item = Dataset()
        item.ReferencedSOPClassUID = pydicom.uid.CTImageStorage
        original = str(dss[1].SOPInstanceUID)
        item.ReferencedSOPInstanceUID = original
        dss[0].SourceImageSequence = Sequence([item])
        deidentify(dss)
        # Annex E keeps the sequence (action X/Z/U on a sequence of references: U applies).
        ref = dss[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert ref != original
        assert ref == dss[1].SOPInstanceUID  # still points at the same (renamed) image

    def test_date_shift(self):
        vol = _volume()
        data, report = deidentified_zip(vol, date_shift_days=-30)
        zf = zipfile.ZipFile(io.BytesIO(data))
        ds = pydicom.dcmread(io.BytesIO(zf.read(zf.namelist()[0])))
        assert ds.StudyDate == "20231216" and report.date_shift_days == -30
        assert "Modified Dates" in report.method

    def test_burned_in_annotation_warning(self):
        vol = _volume(BurnedInAnnotation="YES")
        _, report = deidentified_zip(vol)
        assert report.warnings and "burned-in text" in report.warnings[0]


NESTED_PHI = ("NESTED^PATIENT", "NESTED-ID-42", "20190304", "19551122", "DEEP^DOCTOR", "DEEP-ACC-9", "20200505")


def _nested_phi_series(n: int = 3):
    """A series whose headers hide PHI at two depths, in private, unknown, binary and UN elements."""
    deep = Dataset()
    deep.PatientName = NESTED_PHI[4]
    deep.AccessionNumber = NESTED_PHI[5]
    deep.ContentDate = NESTED_PHI[6]
    deep.CodeValue = "T-D3000"
    deep.StudyInstanceUID = "1.2.3.4.5"  # the top-level study UID: must map to the same new one
    deep.add_new(0x00180099, "LO", "SOMEWHERE^UNKNOWN " + NESTED_PHI[0])  # no Annex E rule: free text
    deep.add_new(0x00420011, "OB", b"pad" + NESTED_PHI[0].encode() + b"\0")  # Encapsulated Document
    deep.add_new(0x0018FFF0, "UN", NESTED_PHI[1].encode())
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Chest"
    item.PatientName = NESTED_PHI[0]
    item.PatientID = NESTED_PHI[1]
    item.StudyDate = NESTED_PHI[2]
    item.PatientBirthDate = NESTED_PHI[3]
    item.AnatomicRegionModifierSequence = Sequence([deep])
    block = item.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "LO", NESTED_PHI[0])
    files = ct_series(ramp_volume((n, 8, 8)), patient_name=PHI["PatientName"],
                      extra={**{k: v for k, v in PHI.items() if k != "PatientName"},
                             "AnatomicRegionSequence": Sequence([item]),
                             "FrameOfReferenceUID": "1.2.3.4.5.99"})
    return load_series(files).volumes[0]


def _every_element(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for sub in elem.value:
                yield from _every_element(sub)


def _as_text(elem) -> str:
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1")
    if elem.VR == "SQ":
        return ""
    return "\\".join(str(v) for v in value) if isinstance(value, pydicom.multival.MultiValue) else str(value)


class TestNestedItems:
    """PS3.15 applies to every item of every sequence, at every depth (issue 15, finding 8)."""

    @pytest.mark.parametrize("shift", [None, -30])
    def test_no_original_value_at_any_depth(self, shift):
        vol = _nested_phi_series()
        originals = {str(h.SOPInstanceUID) for h in vol.slice_headers} | {vol.series_uid, "1.2.3.4.5", "1.2.3.4.5.99"}
        data, _ = deidentified_zip(vol, date_shift_days=shift)
        zf = zipfile.ZipFile(io.BytesIO(data))
        for name in zf.namelist():
            ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
            for elem in _every_element(ds):
                if elem.tag == 0x7FE00010:
                    continue
                text = _as_text(elem)
                for value in (*NESTED_PHI, *PHI.values(), "SECRET", "ID-0001", *originals):
                    assert value not in text, (elem.tag, elem.keyword, value)
                assert not elem.tag.is_private, elem.tag
                assert elem.VR != "UN", elem.tag

    def test_coded_entries_kept_and_uids_consistent(self):
        vol = _nested_phi_series()
        data, _ = deidentified_zip(vol)
        zf = zipfile.ZipFile(io.BytesIO(data))
        ds = pydicom.dcmread(io.BytesIO(zf.read(zf.namelist()[0])))
        item = ds.AnatomicRegionSequence[0]
        assert (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning) == ("T-D3000", "SRT", "Chest")
        deep = item.AnatomicRegionModifierSequence[0]
        assert deep.CodeValue == "T-D3000" and "00180099" not in str(list(deep.keys()))
        assert deep.StudyInstanceUID == ds.StudyInstanceUID  # one new UID for one old UID, at every depth

    def test_dates_inside_items_are_shifted(self):
        vol = _nested_phi_series()
        dss = series_datasets(vol)
        deidentify(dss, date_shift_days=-30)
        item = dss[0].AnatomicRegionSequence[0]
        assert item.get("StudyDate", "") in ("", "20190202")
        assert item.AnatomicRegionModifierSequence[0].ContentDate == "20200405"

    def test_tag_browser_hides_what_the_export_removes(self):
        rows = tag_rows(_nested_phi_series().header, show_phi=False)
        shown = " ".join(r.value for r in rows)
        for value in NESTED_PHI:
            assert value not in shown
        assert next(r for r in rows if r.keyword == "CodeMeaning").value == "Chest"


class TestRoundTrip:
    def test_identical_voxels_and_geometry(self, exported):
        vol, data, _, _ = exported
        back = load_series([("export.zip", data)]).volumes[0]
        np.testing.assert_array_equal(back.voxels, vol.voxels)
        np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
        assert back.spacing == vol.spacing

    def test_float_values_come_back_within_half_a_stored_step(self):
        vol = load_series(ct_series(ramp_volume((3, 16, 12)), slope=0.5, intercept=-10.25)).volumes[0]
        assert vol.voxels.dtype.kind == "f"
        back = load_series([("t.zip", deidentified_zip(vol)[0])]).volumes[0]
        for k in range(3):
            step = float(vol.voxels[k].max() - vol.voxels[k].min()) / 65534  # the per-slice rescale's slope
            np.testing.assert_allclose(back.voxels[k], vol.voxels[k], rtol=0, atol=step / 2 + 1e-4)
        np.testing.assert_allclose(back.positions, vol.positions)

    def test_sample_with_padding_round_trips(self):
        vol = sample_ct()
        data, _ = deidentified_zip(vol)
        back = load_series([("sample.zip", data)]).volumes[0]
        np.testing.assert_array_equal(back.voxels, vol.voxels)
        np.testing.assert_array_equal(back.padding_mask(), vol.padding_mask())

    def test_tilted_series_keeps_its_positions(self):
        tilt = np.tan(np.radians(12))
        positions = np.array([[0, k * 2 * tilt, 2.0 * k] for k in range(5)])
        vol = load_series(ct_series(ramp_volume((5, 8, 8)), positions=positions)).volumes[0]
        back = load_series([("t.zip", deidentified_zip(vol)[0])]).volumes[0]
        np.testing.assert_allclose(back.positions, vol.positions, atol=1e-4)
        assert back.tilt_degrees == pytest.approx(vol.tilt_degrees, abs=1e-3)


class TestResampledExport:
    """Issue 14: the export of a corrected series says it holds resampled slices, with their grid."""

    @pytest.fixture
    def tilted(self):
        tilt = np.tan(np.radians(12))
        positions = np.array([[0, k * 2 * tilt, 2.0 * k] for k in range(5)])
        return load_series(ct_series(ramp_volume((5, 8, 8)), positions=positions)).volumes[0]

    def test_original_slices_say_so(self, tilted):
        data, report = deidentified_zip(tilted)
        assert not report.resampled and report.content == "original slices"
        assert all(n.startswith("original_slices/") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())

    def test_resampled_slices_carry_the_regular_grid(self, tilted):
        corrected = tilted.corrected()
        data, report = deidentified_zip(corrected)
        assert report.resampled and report.content.startswith("resampled slices")
        zf = zipfile.ZipFile(io.BytesIO(data))
        assert all(n.startswith("resampled_slices/") for n in zf.namelist())
        dss = [pydicom.dcmread(io.BytesIO(zf.read(n))) for n in zf.namelist()]
        assert len({str(ds.SOPInstanceUID) for ds in dss}) == len(dss) == corrected.shape[0]
        assert all(list(ds.ImageType) == ["DERIVED", "SECONDARY", "RESAMPLED"] for ds in dss)
        assert float(dss[0].SpacingBetweenSlices) == pytest.approx(corrected.spacing[0])
        back = load_series([("r.zip", data)]).volumes[0]
        assert back.is_regular and back.tilt_degrees == pytest.approx(0, abs=1e-3)
        np.testing.assert_allclose(back.positions, corrected.positions, atol=1e-4)
        np.testing.assert_allclose(back.spacing, corrected.spacing, atol=1e-5)
        np.testing.assert_array_equal(back.voxels, corrected.voxels)


class TestTagRows:
    def test_phi_masked_unless_shown(self):
        vol = _volume()
        hidden = tag_rows(vol.header, show_phi=False)
        by_kw = {r.keyword: r for r in hidden}
        assert by_kw["PatientName"].value == MASK and by_kw["SeriesInstanceUID"].value == MASK
        assert by_kw["Modality"].value == "CT" and by_kw["SOPClassUID"].value == pydicom.uid.CTImageStorage
        shown = {r.keyword: r for r in tag_rows(vol.header, show_phi=True)}
        assert shown["PatientName"].value == "SECRET^PATIENT"

    def test_search_never_finds_a_masked_value(self):
        rows = tag_rows(_volume().header, show_phi=False)
        assert filter_rows(rows, "SECRET") == []
        assert [r.keyword for r in filter_rows(rows, "0010,0010")] == ["PatientName"]
        assert [r.keyword for r in filter_rows(rows, "rescale slope")] == ["RescaleSlope"]

    def test_sequences_private_and_binary(self):
        ds = Dataset()
        item = Dataset()
        item.PatientName = "NESTED^NAME"
        item.CodeValue = "123"
        ds.OtherPatientIDsSequence = Sequence([item])
        ds.add_new(0x00091001, "OB", b"\x00" * 300)
        ds.ImageComments = "x" * 500
        rows = tag_rows(ds, show_phi=True)
        seq = next(r for r in rows if r.keyword == "OtherPatientIDsSequence")
        assert seq.value == "Sequence of 1 item"
        nested = next(r for r in rows if r.keyword == "CodeValue")
        assert nested.depth == 1 and nested.path.startswith("OtherPatientIDsSequence[0] > ")
        priv = next(r for r in rows if r.private)
        assert priv.value == "<300 bytes of binary data>"
        long = next(r for r in rows if r.keyword == "ImageComments")
        assert long.value.endswith("(500 characters)")
        hidden = tag_rows(ds, show_phi=False)
        assert all(r.value == MASK for r in hidden if r.keyword in ("PatientName", "CodeValue"))
        assert not any("NESTED" in r.value for r in hidden)


def test_summary_json_has_no_phi():
    vol = _volume()
    text = summary_json(vol)
    doc = json.loads(text)
    assert doc["shape"] == {"slices": 4, "rows": 16, "columns": 12}
    for value in PHI.values():
        assert value not in text


class TestMaskedSkipped:
    def test_names_masked_in_both_columns_unless_revealed(self):
        from dashboard.loading import masked_skipped

        skipped = [("DOE_JANE.zip/SMITH/notes.txt", "not a DICOM file"),
                   ("DOE_JANE.zip/SMITH/b.dcm", "duplicate of DOE_JANE.zip/SMITH/a.dcm (same SOP Instance UID)"),
                   ("DOE_JANE.zip/SMITH/c.dcm [frame 2]", "truncated")]
        shown = masked_skipped(skipped, show_phi=False,
                               other_names=("DOE_JANE.zip/SMITH/a.dcm", "DOE_JANE.zip/SMITH/c.dcm"))
        assert shown == [("file 1 of the upload", "not a DICOM file"),
                         ("file 2 of the upload", "duplicate of file 4 of the upload (same SOP Instance UID)"),
                         ("file 3 of the upload", "truncated")]
        assert "DOE" not in str(shown) and "SMITH" not in str(shown)
        assert masked_skipped(skipped, show_phi=True) == skipped


class TestIsSafeDescription:
    @pytest.mark.parametrize("text", ["Brain 1.0 H31s", "CHEST W/O C+ 5mm", "Thorax 1.0 B70f", "Bone 1.0 FC30",
                                      "AX 5.0", "Lung 1.25mm", "Surview", "iDose 3", "CTA Head/Neck 0.625",
                                      "Abdomen Pelvis Portal Venous 3mm", "Br64 Hr38 Qr40 D45f",
                                      "BONEPLUS 0.625"])
    def test_scanner_words_numbers_and_codes_pass(self, text):
        assert is_safe_description(text)

    @pytest.mark.parametrize("text", ["Head SMITH", "Jane's brain", "J DOE", "CHEST secret protocol", "O BRIEN",
                                      "", "   ", "Brain for Dr Who", "Chest <b>", "Brain 1.0 ABCDEFG7", "Head Smith2",
                                      "Brain " + "1 " * 40])
    def test_anything_that_may_be_a_name_fails(self, text):
        assert not is_safe_description(text)


def _series(description: str, **extra):
    files = ct_series(ramp_volume((3, 16, 12)), patient_name="SECRET^PATIENT",
                      extra={"SeriesDescription": description, "StudyDate": "20240115", **extra})
    return load_series(files).volumes[0]


class TestSeriesIdentity:
    def test_facts_that_tell_series_apart(self):
        vol = _series("Brain 1.0 H31s", SeriesNumber=3, BodyPartExamined="HEAD", ConvolutionKernel="H31s",
                      SliceThickness=0.9765625, ContrastBolusAgent="IOMERON 350")
        ident = series_identity(vol, show_phi=False)
        assert ident == SeriesIdentity(number="3", description="Brain 1.0 H31s", body_part="head", kernel="H31s",
                                       thickness="0.977 mm", contrast="contrast", date="")
        assert display_description(vol, 1, show_phi=False) == (
            "#2 Series 3 (Brain 1.0 H31s) — head, kernel H31s, 0.977 mm, contrast, CT 3x16x12")

    def test_a_description_that_may_hold_a_name_shows_only_when_revealed(self):
        vol = _series("Head SMITH", SeriesNumber=4)
        assert series_identity(vol, show_phi=False).description == ""
        assert display_description(vol, 0, show_phi=False) == "#1 Series 4 — CT 3x16x12"
        assert "SMITH" not in display_description(vol, 0, show_phi=False)
        assert display_description(vol, 0, show_phi=True) == "#1 Series 4 (Head SMITH) — 2024-01-15, CT 3x16x12"

    def test_no_header_facts(self):
        vol = _series("generated")
        assert display_description(vol, 4, show_phi=False) == "#5 Series — CT 3x16x12"
        assert series_identity(vol, show_phi=False).contrast == ""

    def test_the_sample_keeps_its_description(self):
        assert display_description(sample_ct(), 0, show_phi=False).startswith("#1 Synthetic chest CT")


class TestLabelsOfOtherKinds:
    def test_loops_projections_and_galleries_say_what_they_are(self):
        import numpy as np

        from core import Volume
        from core.privacy import display_description

        def vol(kind: str, n: int, rgb: bool = False) -> Volume:
            voxels = np.zeros((n, 240, 320), np.uint8)
            colour = np.zeros((n, 240, 320, 3), np.uint8) if rgb else None
            return Volume(voxels=voxels, spacing=(1.0, 1.0, 1.0), series_uid="1.2", modality="US", kind=kind,
                          rgb=colour)

        loop = display_description(vol("loop", 30, True), 0, show_phi=False)
        assert loop.endswith("US colour loop, 30 frames of 320 x 240")
        assert display_description(vol("projection", 1), 1, show_phi=False).endswith("US projection, 320 x 240")
        assert display_description(vol("gallery", 2), 2, show_phi=False).endswith("US gallery, 2 images")
        assert display_description(vol("gallery", 1, True), 3, show_phi=False).endswith("US colour image")
