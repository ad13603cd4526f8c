"""Windowing, MPR planes and slabs, orientation, values, ROI statistics, NIfTI export, rendering."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_windowing

from core import GeometryError, Volume, load_series
from core.export import nifti_affine, nifti_bytes, on_one_grid
from core.measure import roi_stats, value_at
from core.mpr import orientation_letter, plane_info, slab, slab_width_slices
from core.render import CROSSHAIR, ViewTransform, encode_png, render_view
from core.windowing import CT_PRESETS, auto_window, window
from tests.factory import ct_series


def _vol(shape=(4, 5, 6), spacing=(2.0, 0.5, 0.8), **kw) -> Volume:
    vox = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    return Volume(voxels=vox, spacing=spacing, series_uid="1.2", modality="CT", units="HU", **kw)


class TestWindow:
    @pytest.mark.parametrize("center,width", [(40, 400), (-600, 1500), (0.5, 1), (10, 2), (127.5, 256), (3, 7)])
    def test_matches_pydicom_linear(self, center, width):
        x = np.arange(-1100, 1600, dtype=np.int16)
        ds = Dataset()
        ds.BitsStored, ds.PixelRepresentation = 8, 0  # output range 0..255
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, "LINEAR"
        expected = np.rint(apply_windowing(x.astype(np.float64), ds)).astype(np.uint8)
        np.testing.assert_array_equal(window(x, center, width), expected)
        # The table path (large int16 arrays) and the arithmetic path agree.
        big = np.tile(x, 3)
        np.testing.assert_array_equal(window(big, center, width), np.tile(expected, 3))
        np.testing.assert_array_equal(window(x.astype(np.float32), center, width), expected)

    def test_exact_values(self):
        # c=40, w=400: x <= -160 -> 0, x > 239 -> 255, ((x - 39.5) / 399 + 0.5) * 255 between.
        out = window(np.array([-1000, -160, -159, 40, 239, 240, 3000]), 40, 400)
        assert out.tolist() == [0, 0, 1, 128, 255, 255, 255]

    def test_invert(self):
        assert window(np.array([-1000, 1000]), 0, 100, invert=True).tolist() == [255, 0]

    def test_uint16_and_uint8_tables(self):
        for dtype in (np.uint16, np.uint8):
            x = np.tile(np.arange(0, 200, dtype=dtype), 50)
            np.testing.assert_array_equal(window(x, 100, 50), window(x.astype(np.float64), 100, 50))

    @pytest.mark.parametrize("width", [0, 0.5, -10, np.nan])
    def test_bad_width(self, width):
        with pytest.raises(ValueError, match="width"):
            window(np.zeros(3), 0, width)

    def test_presets_as_viewers_use_them(self):
        assert CT_PRESETS["Soft tissue"] == (40, 400) and CT_PRESETS["Lung"] == (-600, 1500)
        assert CT_PRESETS["Bone"] == (480, 2500) and CT_PRESETS["Brain"] == (40, 80)
        assert CT_PRESETS["Liver"] == (90, 150) and CT_PRESETS["Mediastinum"] == (50, 350)

    def test_auto_window_percentiles_and_mask(self):
        x = np.arange(101, dtype=np.float32)
        assert auto_window(x, percentiles=(0, 100)) == (50.0, 100.0)
        mask = x > 50
        assert auto_window(x, mask=mask, percentiles=(0, 100)) == (25.0, 50.0)


class TestSlab:
    def test_single_planes_are_views(self):
        v = np.arange(24).reshape(2, 3, 4)
        np.testing.assert_array_equal(slab(v, 0, 1), v[1])
        np.testing.assert_array_equal(slab(v, 1, 2), v[:, 2, :])
        np.testing.assert_array_equal(slab(v, 2, 3), v[:, :, 3])
        assert np.shares_memory(slab(v, 0, 1), v)

    def test_mip_minip_mean(self):
        v = np.array([[[1, 5]], [[3, 2]], [[7, 0]], [[100, 100]]], dtype=np.int16)  # (4, 1, 2)
        assert slab(v, 0, 1, width=3, mode="mip").tolist() == [[7, 5]]
        assert slab(v, 0, 1, width=3, mode="minip").tolist() == [[1, 0]]
        mean = slab(v, 0, 1, width=3, mode="mean")
        assert mean.dtype == np.float32
        np.testing.assert_allclose(mean, [[11 / 3, 7 / 3]], rtol=1e-6)

    def test_slab_clipped_at_the_ends(self):
        v = np.arange(5, dtype=np.int16)[:, None, None]
        assert slab(v, 0, 0, width=3, mode="mip").item() == 2
        assert slab(v, 0, 4, width=3, mode="mip").item() == 4

    def test_width_from_mm(self):
        vol = _vol()
        assert slab_width_slices(vol, 0, 0) == 1
        assert slab_width_slices(vol, 0, 10) == 5
        assert slab_width_slices(vol, 2, 4) == 5

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="mode"):
            slab(np.zeros((2, 2, 2)), 0, 0, width=2, mode="max")


class TestOrientation:
    def test_letters(self):
        assert orientation_letter([1, 0, 0]) == "L" and orientation_letter([-1, 0, 0]) == "R"
        assert orientation_letter([0, -1, 0]) == "A" and orientation_letter([0, 0, 1]) == "S"
        assert orientation_letter([0.8, 0.6, 0]) == "LP"

    def test_axial_ct_views(self):
        vol = _vol()
        ax, cor, sag = (plane_info(vol, a) for a in (0, 1, 2))
        assert (ax.name, cor.name, sag.name) == ("axial", "coronal", "sagittal")
        assert ax.letters == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
        assert cor.letters == {"top": "S", "bottom": "I", "left": "R", "right": "L"} and cor.flip_rows
        assert sag.letters == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
        assert ax.aspect == pytest.approx(0.5 / 0.8)
        assert cor.aspect == pytest.approx(2.0 / 0.8) and sag.aspect == pytest.approx(2.0 / 0.5)

    def test_feet_first_order_is_not_flipped(self):
        vol = _vol(positions=np.array([[0, 0, -2.0 * k] for k in range(4)]))
        assert not plane_info(vol, 1).flip_rows
        assert plane_info(vol, 1).letters["top"] == "S"


class TestValueAndRoi:
    def test_value_at(self):
        vol = _vol(positions=np.array([[10.0, 20.0, 2.0 * k] for k in range(4)]))
        pv = value_at(vol, 2, 3, 4)
        assert pv.value == 2 * 30 + 3 * 6 + 4 and pv.index == (2, 3, 4)
        assert pv.patient_mm == (10 + 4 * 0.8, 20 + 3 * 0.5, 4.0) and not pv.padding
        with pytest.raises(IndexError, match="outside the volume"):
            value_at(vol, 4, 0, 0)

    def test_roi_stats_exact(self):
        vol = _vol()
        s = roi_stats(vol, axis=0, index=1, rows=(1, 3), cols=(2, 4))
        values = np.array([38, 39, 44, 45], dtype=float)
        assert s.n == 4 and s.mean == values.mean() and s.sd == pytest.approx(values.std())
        assert (s.min, s.max) == (38, 45)
        assert s.area_mm2 == pytest.approx(4 * 0.5 * 0.8) and s.volume_ml == pytest.approx(4 * 0.4 * 2.0 / 1000)

    def test_roi_on_a_coronal_plane(self):
        vol = _vol()
        s = roi_stats(vol, axis=1, index=2, rows=(0, 2), cols=(0, 1))
        assert (s.n, s.min, s.max) == (2, 12, 42) and s.area_mm2 == pytest.approx(2 * 2.0 * 0.8)

    def test_padding_is_excluded(self):
        pad = np.zeros((4, 5, 6), bool)
        pad[1, 1, 2] = True
        vol = _vol(padding=np.packbits(pad, axis=-1))
        s = roi_stats(vol, axis=0, index=1, rows=(1, 3), cols=(2, 4))
        assert s.n == 3 and s.min == 39
        assert value_at(vol, 1, 1, 2).padding
        np.testing.assert_array_equal(vol.padding_plane(2, 2), pad[:, :, 2])
        np.testing.assert_array_equal(vol.padding_plane(1, 1), pad[:, 1, :])

    def test_empty_box(self):
        with pytest.raises(ValueError, match="empty or outside"):
            roi_stats(_vol(), axis=0, index=0, rows=(3, 3), cols=(0, 2))


class TestNifti:
    def test_affine_maps_voxels_to_ras(self):
        tilt = np.tan(np.radians(10))
        positions = np.array([[-50.0, 30.0 + k * 3 * tilt, 100 + 3.0 * k] for k in range(4)])
        hu = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
        vol = load_series(ct_series(hu, positions=positions, spacing=(3, 0.5, 0.8))).volumes[0]
        img = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(vol)))
        data = np.asarray(img.dataobj)
        assert data.shape == (6, 5, 4) and data[4, 3, 2] == hu[2, 3, 4]
        lps = vol.patient_position(2, 3, 4)
        ras = img.affine @ [4, 3, 2, 1]
        np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)
        np.testing.assert_allclose(img.affine, nifti_affine(vol))
        assert img.header.get_xyzt_units()[0] == "mm"

    def test_uneven_stack_is_refused_and_its_corrected_grid_is_exact(self):
        # Slices at z = 0, 2, 4, 10, 12: the mean step (3 mm) would put the last slice at 12 mm
        # but the fourth at 9 mm instead of 10. No affine fits: refuse, and export the corrected grid.
        z = [0.0, 2.0, 4.0, 10.0, 12.0]
        positions = np.array([[0.0, 0.0, zz] for zz in z])
        hu = np.stack([np.full((4, 4), 100 * k, np.int16) for k in range(5)])
        vol = load_series(ct_series(hu, positions=positions, spacing=(2, 1, 1))).volumes[0]
        assert not on_one_grid(vol)
        with pytest.raises(GeometryError, match="not evenly spaced"):
            nifti_bytes(vol)
        reg = vol.corrected()
        assert on_one_grid(reg)
        img = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(reg)))
        data = np.asarray(img.dataobj)
        # The voxel of the grid at z = 10 mm holds slice 3 (300 HU), wherever the grid puts it.
        k = int(np.argmin(np.abs((img.affine @ np.array([[0, 0, kk, 1] for kk in range(data.shape[2])]).T)[2] - 10)))
        assert (img.affine @ [0, 0, k, 1])[2] == pytest.approx(10.0, abs=1e-4)
        assert data[0, 0, k] == 300

    def test_tilted_even_stack_is_on_one_grid(self):
        tilt = np.tan(np.radians(20))
        positions = np.array([[0.0, k * 2 * tilt, 2.0 * k] for k in range(5)])
        vol = load_series(ct_series(np.zeros((5, 4, 4), np.int16), positions=positions)).volumes[0]
        assert on_one_grid(vol) and not vol.is_regular


class TestRender:
    def test_aspect_size_and_letters(self):
        vol = _vol(shape=(10, 40, 40), spacing=(4.0, 1.0, 1.0))
        shown = window(slab(vol.voxels, 1, 20), 1000, 4000)
        img, tf = render_view(shown, plane_info(vol, 1), max_size=160, letters=False)
        assert img.shape == (160, 160)  # 10 slices x 4 mm = 40 x 1 mm: square on screen
        assert tf.to_array(0, 0) == (9, 0)  # head up: the last slice is at the top

    def test_crosshair_lines_in_their_colours(self):
        vol = _vol(shape=(8, 64, 64), spacing=(1.0, 1.0, 1.0))
        shown = np.full((64, 64), 100, np.uint8)
        img, tf = render_view(shown, plane_info(vol, 0), max_size=64, crosshair={1: 10, 2: 50}, letters=False)
        assert (img[10, :40] == CROSSHAIR[1]).all() and (img[:4, 50] == CROSSHAIR[2]).all()
        assert img[10, 50] != CROSSHAIR[1]  # a gap leaves the voxel itself visible

    def test_zoom_round_trip(self):
        vol = _vol(shape=(8, 64, 64), spacing=(1.0, 1.0, 1.0))
        shown = np.zeros((64, 64), np.uint8)
        _, tf = render_view(shown, plane_info(vol, 0), max_size=256, zoom=4, center=(40, 20), letters=False)
        x, y = tf.to_display(40, 20)
        assert tf.to_array(x, y) == (40, 20)
        assert isinstance(tf, ViewTransform) and tf.scale == (16.0, 16.0)

    def test_png_palette(self):
        png = encode_png(np.array([[0, 252, 253]], np.uint8), "grey")
        im = Image.open(io.BytesIO(png))
        assert im.mode == "P"
        assert np.array(im.convert("RGB")).tolist() == [[[0, 0, 0], [255, 255, 255], [230, 60, 60]]]
