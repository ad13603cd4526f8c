"""core.sr: the measurement report (TID 1500) read back by highdicom and pydicom, value for value."""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from core import load_series
from core.annotations import Measurement
from core.sr import measurement_report, patient_point, plane_outline
from tests.factory import ct_series

SPACING = (3.0, 0.6, 0.8)  # anisotropic: every axis has its own step


@pytest.fixture(scope="module")
def vol():
    hu = np.zeros((5, 16, 20), np.int16)
    files = ct_series(hu, spacing=SPACING, origin=(-7.0, 4.0, 100.0), series_uid=generate_uid(),
                      extra={"FrameOfReferenceUID": generate_uid(), "StudyInstanceUID": "1.2.3.44"})
    return load_series(files).volumes[0]


MEASUREMENTS = [
    Measurement("length", 0, 2, ((1.0, 2.0), (11.0, 17.5)), label="Nodule diameter"),
    Measurement("angle", 0, 4, ((0.0, 0.0), (5.0, 5.0), (0.0, 10.0))),
    Measurement("ellipse", 0, 1, ((2.0, 3.0), (8.0, 15.0))),
    Measurement("rectangle", 1, 7, ((0.5, 1.0), (3.5, 9.0))),  # coronal: rows are slices
    Measurement("point", 2, 12, ((2.25, 6.0),)),  # sagittal: rows slices, columns rows of the volume
    Measurement("length", 1, 3, ((0.0, 0.0), (4.0, 0.0))),  # coronal, along the slices
    Measurement("rectangle", 0, 0, ((1.0, 2.0), (3.0, 5.0))),  # axial: a closed POLYLINE in SCOORD
]
VALUES = [
    {"length_mm": 12.345678},
    {"angle_deg": 90.0},
    {"mean": -812.25, "sd": 31.5, "min": -1000.0, "max": -500.0, "area_mm2": 45.125, "n": 80},
    {"mean": 40.0, "sd": 0.0, "min": 40.0, "max": 40.0, "area_mm2": float("nan"), "n": 0},
    {"value": 55.0, "x_mm": 1.0, "y_mm": 2.0, "z_mm": 3.0},
    {"length_mm": 12.0},
    {"mean": 0.0, "sd": 0.0, "min": 0.0, "max": 0.0, "area_mm2": 7.68, "n": 16},
]
NAMES = {"length_mm": "Length", "angle_deg": "Angle", "mean": "Mean", "sd": "Standard Deviation", "min": "Minimum",
         "max": "Maximum", "area_mm2": "Area", "value": "Attenuation Coefficient"}
UNITS = {"length_mm": "mm", "angle_deg": "deg", "area_mm2": "mm2"}


@pytest.fixture(scope="module")
def report(vol):
    return measurement_report(vol, MEASUREMENTS, VALUES)


class TestMeasurementReport:
    def test_values_read_back_exactly(self, report):
        sr = hd.sr.srread(io.BytesIO(report))
        groups = sr.content.get_planar_roi_measurement_groups()
        assert len(groups) == len(MEASUREMENTS)
        # Named as the page names them (numbered within their kind), unless the user named them.
        names = ["Nodule diameter", "Angle 1", "Ellipse 1", "Rectangle 1", "Point 1", "Length 2", "Rectangle 2"]
        assert [g.tracking_identifier for g in groups] == names
        for g, vals in zip(groups, VALUES, strict=True):
            got = {x.name.meaning: (x.value, x.unit.value) for x in g.get_measurements()}
            want = {NAMES[k]: (v, UNITS.get(k, "[hnsf'U]")) for k, v in vals.items()
                    if k in NAMES and np.isfinite(v)}
            assert got == want

    def test_axial_regions_are_scoord_on_the_slice_image(self, vol, report):
        sr = hd.sr.srread(io.BytesIO(report))
        for g, m in zip(sr.content.get_planar_roi_measurement_groups()[:3], MEASUREMENTS[:3], strict=True):
            roi = g.roi
            assert isinstance(roi, hd.sr.ImageRegion)
            assert roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
                vol.slice_headers[m.index].SOPInstanceUID
            outline = plane_outline(m)
            np.testing.assert_array_equal(roi.value, np.stack([outline[:, 1], outline[:, 0]], 1) + 0.5)
        ellipse = sr.content.get_planar_roi_measurement_groups()[2].roi
        assert ellipse.graphic_type.value == "ELLIPSE"  # major axis (columns 3..15) first, then minor
        np.testing.assert_array_equal(ellipse.value, [[3.5, 5.5], [15.5, 5.5], [9.5, 2.5], [9.5, 8.5]])

    def test_coronal_and_sagittal_regions_are_scoord3d_in_patient_mm(self, vol, report):
        sr = hd.sr.srread(io.BytesIO(report))
        frame = vol.slice_headers[0].FrameOfReferenceUID
        x0, y0, z0 = -7.0, 4.0, 100.0
        dz, dy, dx = SPACING
        expected = {
            3: [[x0 + c * dx, y0 + 7 * dy, z0 + r * dz] for r, c in ((0.5, 1), (0.5, 9), (3.5, 9), (3.5, 1), (0.5, 1))],
            4: [[x0 + 12 * dx, y0 + 6 * dy, z0 + 2.25 * dz]],
            5: [[x0, y0 + 3 * dy, z0], [x0, y0 + 3 * dy, z0 + 4 * dz]],
        }
        groups = sr.content.get_planar_roi_measurement_groups()
        for i, points in expected.items():
            roi = groups[i].roi
            assert isinstance(roi, hd.sr.ImageRegion3D)
            assert roi.frame_of_reference_uid == frame
            np.testing.assert_array_equal(roi.value, np.asarray(points, dtype=np.float32))  # FL: float32
        assert np.linalg.norm(np.subtract(*expected[5])) == VALUES[5]["length_mm"]  # 4 slices of 3 mm
        assert groups[3].roi.graphic_type.value == "POLYGON" and groups[4].roi.graphic_type.value == "POINT"

    def test_an_axial_rectangle_is_a_closed_polyline(self, vol, report):
        roi = hd.sr.srread(io.BytesIO(report)).content.get_planar_roi_measurement_groups()[6].roi
        assert isinstance(roi, hd.sr.ImageRegion) and roi.graphic_type.value == "POLYLINE"
        np.testing.assert_array_equal(roi.value, [[2.5, 1.5], [5.5, 1.5], [5.5, 3.5], [2.5, 3.5], [2.5, 1.5]])

    def test_refers_to_the_series_and_belongs_to_its_study(self, vol, report):
        ds = pydicom.dcmread(io.BytesIO(report))
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert ds.StudyInstanceUID == "1.2.3.44" and ds.PatientName == "DOE^JANE" and ds.PatientID == "ID-0001"
        assert ds.SeriesInstanceUID != vol.series_uid
        evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        assert [s.SeriesInstanceUID for s in evidence] == [vol.series_uid]
        assert {i.ReferencedSOPInstanceUID for i in evidence[0].ReferencedSOPSequence} == {
            h.SOPInstanceUID for h in vol.slice_headers}

    def test_a_corrected_series_is_reported_in_patient_coordinates(self, vol):
        uneven = load_series(ct_series(np.zeros((4, 6, 8), np.int16), positions=np.array(
            [[0, 0, 0], [0, 0, 2.0], [0, 0, 4.0], [0, 0, 8.0]]), series_uid=generate_uid(),
            extra={"FrameOfReferenceUID": "1.2.3.99"})).volumes[0]
        corrected = uneven.corrected()
        assert corrected.slice_headers == ()
        m = Measurement("length", 0, 3, ((0.0, 0.0), (0.0, 5.0)))
        sr = hd.sr.srread(io.BytesIO(measurement_report(corrected, [m], [{"length_mm": 4.0}])))
        roi = sr.content.get_planar_roi_measurement_groups()[0].roi
        assert isinstance(roi, hd.sr.ImageRegion3D) and roi.frame_of_reference_uid == "1.2.3.99"
        np.testing.assert_array_equal(roi.value, np.asarray([corrected.positions[3], corrected.positions[3] +
                                                             [5 * corrected.spacing[2], 0, 0]], dtype=np.float32))
        assert sr.PatientName == "DOE^JANE"

    @pytest.mark.parametrize("axis", [0, 1, 2])
    @pytest.mark.parametrize("kind", ["length", "angle", "ellipse", "rectangle", "point"])
    def test_every_kind_on_every_view_is_written_and_read_back(self, vol, kind, axis):
        points = {"length": ((1.0, 1.0), (3.0, 4.0)), "angle": ((0.0, 0.0), (2.0, 2.0), (0.0, 4.0)),
                  "ellipse": ((1.0, 1.0), (3.0, 6.0)), "rectangle": ((1.0, 1.0), (3.0, 6.0)), "point": ((2.0, 3.0),)}
        values = {"length": {"length_mm": 1.0}, "angle": {"angle_deg": 90.0}, "point": {"value": -5.0},
                  "ellipse": {"mean": 1.0, "sd": 0.5, "min": 0.0, "max": 2.0, "area_mm2": 3.0},
                  "rectangle": {"mean": 1.0, "sd": 0.5, "min": 0.0, "max": 2.0, "area_mm2": 3.0}}
        m = Measurement(kind, axis, 2, points[kind])
        sr = hd.sr.srread(io.BytesIO(measurement_report(vol, [m], [values[kind]])))
        group = sr.content.get_planar_roi_measurement_groups()[0]
        assert len(group.roi.value) == len(plane_outline(m))
        assert {x.name.meaning: x.value for x in group.get_measurements()} == {
            NAMES[k]: v for k, v in values[kind].items()}

    def test_patient_point_interpolates_between_slices(self, vol):
        p = patient_point(vol, 1, 3, 1.5, 2.0)
        np.testing.assert_allclose(p, [-7.0 + 2 * 0.8, 4.0 + 3 * 0.6, 100.0 + 1.5 * 3.0])

    def test_errors(self, vol):
        with pytest.raises(ValueError, match="no measurement"):
            measurement_report(vol, [], [])
        with pytest.raises(ValueError, match="1 measurements but 2 sets"):
            measurement_report(vol, MEASUREMENTS[:1], VALUES[:2])
