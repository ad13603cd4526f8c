"""Face detection in photographs with OpenCV's Haar cascades, and blurring what it finds."""

from __future__ import annotations

import threading

import cv2
import cv2.data  # loaded by cv2 already; named so type checkers see the submodule
import numpy as np

__all__ = [
    "CASCADES",
    "blur_regions",
    "detect_eyes",
    "detect_faces",
    "detect_faces_scored",
    "to_gray",
]

# Name -> the XML shipped inside opencv-python-headless 4.x (cv2.data.haarcascades).
CASCADES = {
    "frontalface_default": "haarcascade_frontalface_default.xml",
    "frontalface_alt": "haarcascade_frontalface_alt.xml",
    "frontalface_alt2": "haarcascade_frontalface_alt2.xml",
    "profileface": "haarcascade_profileface.xml",
    "eye": "haarcascade_eye.xml",
}

# One classifier per thread and cascade: detectMultiScale keeps scratch state, and
# Streamlit runs sessions in threads. Classifiers hold no user data.
_LOCAL = threading.local()


def _classifier(name: str) -> cv2.CascadeClassifier:
    if name not in CASCADES:
        raise ValueError(f"cascade must be one of {sorted(CASCADES)}, got {name!r}")
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    if name not in cache:
        clf = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADES[name])
        if clf.empty():
            raise RuntimeError(f"OpenCV could not load the {name} cascade from {cv2.data.haarcascades}")
        cache[name] = clf
    return cache[name]


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 grey image from grey or RGB(A) input of any dtype (min-max scaled if not uint8)."""
    img = np.asarray(image)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if img.shape[2] == 3:
            if img.dtype != np.uint8:
                img = _to_uint8(img)
            img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        else:
            img = img[:, :, 0]
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.asarray(image).shape}")
    return img if img.dtype == np.uint8 else _to_uint8(img)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def detect_faces_scored(
    image: np.ndarray,
    *,
    cascade: str = "frontalface_default",
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: tuple[int, int] = (30, 30),
    equalize: bool = False,
    max_side: int | None = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """Faces and their confidence (the cascade's level weight), most confident first.

    Detection runs on a copy whose longest side is at most ``max_side`` pixels (faces
    smaller than the 24-pixel detection window there are missed), and boxes are mapped
    back to the input's pixels. ``max_side=None`` searches the full resolution.

    Returns
    -------
    boxes : (N, 4) int ndarray
        x, y, w, h in input pixels; (0, 4) when none.
    scores : (N,) float ndarray
    """
    if scale_factor <= 1.0:
        raise ValueError(f"scale_factor must be above 1, got {scale_factor!r}")
    if min_neighbors < 0:
        raise ValueError(f"min_neighbors must be 0 or more, got {min_neighbors!r}")
    gray = to_gray(image)
    h, w = gray.shape
    scale = 1.0
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if equalize:
        gray = cv2.equalizeHist(gray)
    ms = (max(1, int(round(min_size[0] * scale))), max(1, int(round(min_size[1] * scale))))
    rects, _, weights = _classifier(cascade).detectMultiScale3(
        gray, scaleFactor=float(scale_factor), minNeighbors=int(min_neighbors), minSize=ms, outputRejectLevels=True)
    if len(rects) == 0:
        return np.zeros((0, 4), dtype=int), np.zeros(0)
    boxes = np.rint(np.asarray(rects, dtype=np.float64) / scale).astype(int)
    scores = np.asarray(weights, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order]


def detect_faces(
    image: np.ndarray,
    *,
    cascade: str = "frontalface_default",
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: tuple[int, int] = (30, 30),
    equalize: bool = False,
    max_side: int | None = 400,
) -> np.ndarray:
    """Boxes (x, y, w, h) of the faces found, most confident first; an empty (0, 4) array when none.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) ndarray
        Grey or RGB, any dtype.
    cascade : str
        One of :data:`CASCADES` (Lienhart's frontal detectors, the profile detector, eyes).
    scale_factor, min_neighbors, min_size
        As OpenCV's ``detectMultiScale``; ``min_size`` in input pixels.
    equalize : bool
        Equalise the histogram first (helps on dim or flat images).
    max_side : int or None
        See :func:`detect_faces_scored`.
    """
    return detect_faces_scored(image, cascade=cascade, scale_factor=scale_factor, min_neighbors=min_neighbors,
                               min_size=min_size, equalize=equalize, max_side=max_side)[0]


def detect_eyes(image: np.ndarray, face: np.ndarray | tuple[int, int, int, int], *,
                min_neighbors: int = 5) -> np.ndarray:
    """Eyes inside the upper part of a face box, in image pixels; (0, 4) when none."""
    x, y, w, h = (int(v) for v in face)
    gray = to_gray(image)
    roi = gray[y:y + int(h * 0.6), x:x + w]
    if roi.size == 0:
        return np.zeros((0, 4), dtype=int)
    found = _classifier("eye").detectMultiScale(roi, scaleFactor=1.1, minNeighbors=min_neighbors,
                                                minSize=(max(4, w // 10), max(4, w // 10)))
    if len(found) == 0:
        return np.zeros((0, 4), dtype=int)
    boxes = np.asarray(found, dtype=int)
    boxes[:, 0] += x
    boxes[:, 1] += y
    return boxes


def blur_regions(image: np.ndarray, boxes: np.ndarray, *, method: str = "blur", strength: float = 1.0,
                 margin: float = 0.15) -> np.ndarray:
    """A copy of ``image`` with every box blurred or pixelated beyond recognition.

    Parameters
    ----------
    image : ndarray
        Grey or colour, any dtype.
    boxes : (N, 4) array_like
        x, y, w, h.
    method : {"blur", "pixelate"}
    strength : float
        1 makes the blur kernel about half the box size (or 5 blocks across).
    margin : float
        Grows each box by this fraction on every side (hair, ears, chin).
    """
    if method not in ("blur", "pixelate"):
        raise ValueError(f"method must be 'blur' or 'pixelate', got {method!r}")
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    for x, y, bw, bh in np.asarray(boxes, dtype=int).reshape(-1, 4):
        mx, my = int(bw * margin), int(bh * margin)
        x0, y0, x1, y1 = max(0, x - mx), max(0, y - my), min(w, x + bw + mx), min(h, y + bh + my)
        if x1 <= x0 or y1 <= y0:
            continue
        roi = out[y0:y1, x0:x1]
        if method == "blur":
            k = max(3, int(max(x1 - x0, y1 - y0) * 0.5 * strength) | 1)
            region = cv2.GaussianBlur(roi, (k, k), 0)
            region = cv2.GaussianBlur(region, (k, k), 0)
        else:
            blocks = max(2, int(round(5 / max(strength, 0.1))))
            size = (blocks, max(2, round(blocks * (y1 - y0) / (x1 - x0))))
            small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
            region = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        out[y0:y1, x0:x1] = region
    return out
