"""core.annotations: the exact values of the explorer's measurements, and their CSV."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from core import Volume
from core.annotations import (
    VALUE_KEYS,
    Measurement,
    measure,
    measurement_names,
    measurements_csv,
    region_mask,
    value_columns,
)


def _vol(shape=(6, 20, 30), spacing=(3.0, 0.5, 0.8), **kw) -> Volume:
    """Voxel (k, j, i) holds 1000 k + 10 j + i: every value says where it is."""
    k, j, i = np.indices(shape)
    vox = (1000 * k + 10 * j + i).astype(np.int16)
    return Volume(voxels=vox, spacing=spacing, series_uid="1.2", modality="CT", units="HU", **kw)


class TestLength:
    @pytest.mark.parametrize(("axis", "row_mm", "col_mm"), [(0, 0.5, 0.8), (1, 3.0, 0.8), (2, 3.0, 0.5)])
    def test_uses_the_planes_own_spacing(self, axis, row_mm, col_mm):
        vol = _vol()
        down = Measurement("length", axis, 2, ((1.0, 2.0), (4.0, 2.0)))
        across = Measurement("length", axis, 2, ((1.0, 2.0), (1.0, 7.0)))
        diagonal = Measurement("length", axis, 2, ((0.0, 0.0), (3.0, 4.0)))
        assert measure(vol, down) == {"length_mm": pytest.approx(3 * row_mm)}
        assert measure(vol, across) == {"length_mm": pytest.approx(5 * col_mm)}
        assert measure(vol, diagonal)["length_mm"] == pytest.approx(math.hypot(3 * row_mm, 4 * col_mm))


class TestAngle:
    def test_right_angle_in_millimetres_not_pixels(self):
        vol = _vol()
        # On the coronal plane rows are 3 mm, columns 0.8 mm: one row down and one column across
        # make 75 degrees from the columns' direction (atan(3 / 0.8)), not 45.
        m = Measurement("angle", 1, 0, ((0.0, 5.0), (0.0, 0.0), (1.0, 1.0)))
        assert measure(vol, m)["angle_deg"] == pytest.approx(math.degrees(math.atan2(3.0, 0.8)))
        straight = Measurement("angle", 0, 0, ((0.0, -3.0), (0.0, 0.0), (0.0, 4.0)))
        assert measure(vol, straight)["angle_deg"] == pytest.approx(180.0)

    def test_arm_of_no_length(self):
        vol = _vol()
        assert math.isnan(measure(vol, Measurement("angle", 0, 0, ((1.0, 1.0), (1.0, 1.0), (2.0, 3.0))))["angle_deg"])


class TestRegions:
    def test_rectangle_takes_the_pixel_centres_inside(self):
        vol = _vol()
        m = Measurement("rectangle", 0, 2, ((3.2, 4.0), (5.9, 6.5)))  # rows 4, 5; columns 4, 5, 6
        values = np.array([2000 + 10 * j + i for j in (4, 5) for i in (4, 5, 6)], float)
        got = measure(vol, m)
        assert got == {"mean": values.mean(), "sd": pytest.approx(values.std()), "min": 2044.0, "max": 2056.0,
                       "area_mm2": pytest.approx(6 * 0.5 * 0.8), "n": 6.0}

    def test_ellipse_inscribed_in_the_box(self):
        vol = _vol()
        m = Measurement("ellipse", 2, 7, ((1.0, 2.0), (5.0, 12.0)))  # sagittal: rows k, columns j
        # Centre (3, 7), semi-axes 2 rows and 5 columns; by hand: inside when ((k-3)/2)^2 + ((j-7)/5)^2 <= 1.
        inside = [(k, j) for k in range(6) for j in range(20) if ((k - 3) / 2) ** 2 + ((j - 7) / 5) ** 2 <= 1]
        assert len(inside) == 1 + 9 + 11 + 9 + 1
        values = np.array([1000 * k + 10 * j + 7 for k, j in inside], float)
        got = measure(vol, m)
        assert got["n"] == len(inside) and got["mean"] == pytest.approx(values.mean())
        assert got["sd"] == pytest.approx(values.std()) and (got["min"], got["max"]) == (values.min(), values.max())
        assert got["area_mm2"] == pytest.approx(len(inside) * 3.0 * 0.5)

    def test_corners_in_any_order(self):
        vol = _vol()
        a = measure(vol, Measurement("ellipse", 0, 1, ((2.0, 3.0), (9.0, 14.0))))
        b = measure(vol, Measurement("ellipse", 0, 1, ((9.0, 3.0), (2.0, 14.0))))
        assert a == b

    def test_padding_is_excluded(self):
        pad = np.zeros((6, 20, 30), bool)
        pad[2, 4, 4] = True
        vol = _vol(padding=np.packbits(pad, axis=-1))
        got = measure(vol, Measurement("rectangle", 0, 2, ((4.0, 4.0), (4.0, 5.0))))
        assert (got["n"], got["mean"]) == (1.0, 2045.0)
        only = measure(vol, Measurement("rectangle", 0, 2, ((4.0, 4.0), (4.0, 4.0))))
        assert only["n"] == 0 and math.isnan(only["mean"]) and only["area_mm2"] == 0

    def test_flat_ellipse_is_empty(self):
        assert not region_mask("ellipse", ((2.0, 1.0), (2.0, 8.0)), (5, 10)).any()
        with pytest.raises(ValueError, match="kind must be"):
            region_mask("length", ((0.0, 0.0), (1.0, 1.0)), (5, 10))


class TestPoint:
    def test_value_and_patient_position(self):
        vol = _vol(positions=np.array([[10.0, 20.0, 3.0 * k] for k in range(6)]))
        got = measure(vol, Measurement("point", 1, 4, ((2.4, 7.5),)))  # coronal: row k 2, column i 8 (half up)
        assert got == {"value": 2048.0, "x_mm": pytest.approx(10 + 8 * 0.8), "y_mm": pytest.approx(20 + 4 * 0.5),
                       "z_mm": pytest.approx(6.0)}


class TestErrors:
    @pytest.mark.parametrize(("m", "match"), [
        (Measurement("length", 0, 6, ((0.0, 0.0), (1.0, 1.0))), "outside the volume"),
        (Measurement("length", 3, 0, ((0.0, 0.0), (1.0, 1.0))), "outside the volume"),
        (Measurement("angle", 0, 0, ((0.0, 0.0), (1.0, 1.0))), "has 3 points"),
        (Measurement("circle", 0, 0, ((0.0, 0.0),)), "kind must be"),  # type: ignore[arg-type]
    ])
    def test_refused(self, m, match):
        with pytest.raises(ValueError, match=match):
            measure(_vol(), m)


class TestCsv:
    def test_one_line_each_with_its_own_values(self):
        vol = _vol()
        ms = [Measurement("length", 1, 3, ((0.0, 0.0), (4.0, 0.0)), label="aorta"),
              Measurement("rectangle", 0, 2, ((4.0, 4.0), (4.0, 5.0)))]
        rows = list(csv.DictReader(io.StringIO(measurements_csv(vol, ms).decode("utf-8"))))
        assert [r["Measurement"] for r in rows] == ["Length 1", "Rectangle 1"]  # numbered within their kind
        assert (rows[0]["View"], rows[0]["Slice"], rows[0]["Label"]) == ("Coronal", "4", "aorta")
        assert float(rows[0]["Length (mm)"]) == 12.0 and rows[0]["Mean (HU)"] == ""
        assert (rows[1]["View"], rows[1]["Slice"], rows[1]["Voxels"], rows[1]["Mean (HU)"]) == (
            "Axial", "3", "2", "2044.5")
        assert rows[1]["Length (mm)"] == ""

    def test_values_in_modality_units_say_their_unit(self):
        header = next(csv.reader(io.StringIO(measurements_csv(_vol(), []).decode("utf-8"))))
        assert header == ["Measurement", "View", "Slice", "Label", "Length (mm)", "Angle (degrees)", "Value (HU)",
                          "x (mm, LPS)", "y (mm, LPS)", "z (mm, LPS)", "Mean (HU)", "SD (HU)", "Min (HU)",
                          "Max (HU)", "Area (mm²)", "Voxels"]
        assert value_columns("")["mean"] == "Mean (stored units)"

    def test_names_are_numbered_within_their_kind(self):
        pts2 = ((0.0, 0.0), (1.0, 1.0))
        ms = [Measurement("length", 0, 0, pts2), Measurement("length", 0, 0, pts2),
              Measurement("angle", 0, 0, (*pts2, (2.0, 0.0))), Measurement("ellipse", 0, 0, pts2)]
        assert measurement_names(ms) == ["Length 1", "Length 2", "Angle 1", "Ellipse 1"]

    def test_value_keys_are_what_measure_gives(self):
        vol = _vol()
        shapes = {"length": 2, "angle": 3, "ellipse": 2, "rectangle": 2, "point": 1}
        for kind, keys in VALUE_KEYS.items():
            pts = tuple((float(p), float(p + 1)) for p in range(shapes[kind]))
            assert tuple(measure(vol, Measurement(kind, 0, 0, pts))) == keys  # type: ignore[arg-type]
