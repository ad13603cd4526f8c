"""The one PNG encoder: grey, RGB and palette images come back pixel for pixel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.png import png_bytes


def _decoded(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


class TestPngBytes:
    def test_grey_round_trip(self):
        img = np.arange(256, dtype=np.uint8).reshape(16, 16)
        back = _decoded(png_bytes(img))
        assert back.mode == "L"
        np.testing.assert_array_equal(np.asarray(back), img)

    def test_rgb_keeps_channel_order(self):
        img = np.zeros((2, 3, 3), np.uint8)
        img[..., 0] = 200  # red, not blue: OpenCV's BGR must not leak in
        back = _decoded(png_bytes(img))
        assert back.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(back), img)

    def test_palette_indices_and_colours(self):
        idx = np.array([[0, 1], [1, 0]], np.uint8)
        back = _decoded(png_bytes(idx, palette=[10, 20, 30, 40, 50, 60]))
        assert back.mode == "P"
        np.testing.assert_array_equal(np.asarray(back), idx)
        np.testing.assert_array_equal(np.asarray(back.convert("RGB"))[0, 1], [40, 50, 60])

    @pytest.mark.parametrize(("image", "kw", "match"), [
        (np.zeros((2, 2), np.int16), {}, "must be uint8, got int16"),
        (np.zeros((2, 2, 4), np.uint8), {}, r"must be \(H, W\) or \(H, W, 3\)"),
        (np.zeros((2, 2, 3), np.uint8), {"palette": [0, 0, 0]}, r"palette image must be \(H, W\)"),
    ])
    def test_errors_name_the_problem(self, image, kw, match):
        with pytest.raises(ValueError, match=match):
            png_bytes(image, **kw)
