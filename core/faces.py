"""Face detection with OpenCV's Haar cascades, anonymisation, and skin renderings of head CT."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "CASCADES",
    "PrivacyEvidence",
    "blur_regions",
    "detect_eyes",
    "detect_faces",
    "detect_faces_scored",
    "has_head",
    "privacy_check",
    "render_skin",
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


def detect_eyes(image: np.ndarray, face: np.ndarray | tuple[int, int, int, int], *, min_neighbors: int = 5) -> np.ndarray:
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
    found = np.asarray(found, dtype=int)
    found[:, 0] += x
    found[:, 1] += y
    return found


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
            small = cv2.resize(roi, (blocks, max(2, round(blocks * (y1 - y0) / (x1 - x0)))), interpolation=cv2.INTER_AREA)
            region = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        out[y0:y1, x0:x1] = region
    return out


def render_skin(
    volume,
    *,
    level: float = -300.0,
    azimuth: float = 0.0,
    light: tuple[float, float, float] = (0.0, 0.0, 1.0),
    pixel_mm: float = 1.0,
) -> np.ndarray:
    """A depth-shaded picture of the skin surface seen from the front (no GPU).

    The volume is first placed on a regular grid at its true patient positions (gantry
    tilt removed), turned by ``azimuth`` degrees about the patient's vertical axis, and
    each ray from the front stops at the first voxel at or above ``level``; the depth
    map is then lit with a Lambert model.

    Parameters
    ----------
    volume : Volume
        An axial CT (slices along the patient's head-feet axis).
    level : float
        Skin threshold in HU.
    azimuth : float
        Degrees; positive turns the patient's left side towards the viewer.
    light : (3,) float
        Direction towards the light in view coordinates (x right, y up, z towards the viewer).
    pixel_mm : float
        Size of one output pixel.

    Returns
    -------
    (H, W) uint8 ndarray
        Head at the top, the patient's right on the viewer's left; background 0.
    """
    vol = volume if volume.is_regular else volume.corrected()
    dz, dy, dx = vol.spacing
    # Work near pixel_mm: stride the in-plane axes, keep slices (usually the coarsest).
    sy, sx = max(1, int(round(pixel_mm / dy))), max(1, int(round(pixel_mm / dx)))
    mask = (vol.voxels[:, ::sy, ::sx] >= level).view(np.uint8)
    pad = vol.padding
    if pad is not None:
        pm = np.unpackbits(pad, axis=-1, count=vol.shape[2]).astype(bool)[:, ::sy, ::sx]
        mask = mask & ~pm
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    ry, rx = dy * sy, dx * sx
    nz, ny, nx = mask.shape
    if azimuth:
        # Rotate every axial plane about its centre, in millimetres (anisotropic pixels).
        c, s = np.cos(np.radians(azimuth)), np.sin(np.radians(azimuth))
        size = int(np.ceil(np.hypot(ny * ry, nx * rx) / pixel_mm))
        m = np.array([[c * rx / pixel_mm, -s * ry / pixel_mm, 0.0], [s * rx / pixel_mm, c * ry / pixel_mm, 0.0]])
        centre_in = np.array([(nx - 1) / 2, (ny - 1) / 2])
        m[:, 2] = (size - 1) / 2 - m[:, :2] @ centre_in
        planes = np.empty((nz, size, size), np.uint8)
        for k in range(nz):
            planes[k] = cv2.warpAffine(mask[k], m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
        mask, ry, rx = planes, pixel_mm, pixel_mm
        ny = nx = size
    hit = mask.any(axis=1)  # (slices, cols): rays (along rows, anterior first) that meet skin
    first = mask.argmax(axis=1).astype(np.float32) * ry  # depth in mm from the front
    depth = np.where(hit, first, np.nan)
    # Normals from the depth gradient (x across, y up the patient, z towards the viewer).
    superior_last = float(np.dot(vol.slice_step, [0, 0, 1])) > 0
    filled = np.nan_to_num(depth, nan=float(np.nanmax(depth)) if hit.any() else 0.0).astype(np.float32)
    # Depth comes in whole voxels: smooth it so the shading shows the surface, not its steps.
    filled = cv2.GaussianBlur(filled, (0, 0), sigmaX=max(1.0, 1.5 / rx * pixel_mm), sigmaY=max(1.0, 1.5 * pixel_mm / dz))
    gz, gx = np.gradient(filled, dz, rx)
    g_up = gz if superior_last else -gz
    # The surface faces the viewer at z = -depth: its normal is (d depth/dx, d depth/d up, 1).
    normal = np.stack([gx, g_up, np.ones_like(gx)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    lvec = np.asarray(light, dtype=np.float64)
    lvec = lvec / np.linalg.norm(lvec)
    shade = 0.15 + 0.85 * np.clip(normal @ lvec, 0, 1)
    img = np.where(hit, shade * 255.0, 0.0)
    if superior_last:
        img = img[::-1]
    out_h = max(1, int(round(nz * dz / pixel_mm)))
    out = cv2.resize(img.astype(np.float32), (nx if azimuth else int(round(nx * rx / pixel_mm)), out_h),
                     interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def has_head(volume, *, level: float = -300.0) -> tuple[bool, str]:
    """Whether the volume seems to hold a head, from the width of the body slice by slice."""
    if volume.units != "HU":
        return False, "the face check needs a CT volume in HU"
    if volume.shape[0] < 10:
        return False, "too few slices to render a face"
    dz, dy, dx = volume.spacing
    body = volume.voxels[:, ::2, ::2] >= level
    widths = body.any(axis=1).sum(axis=1) * dx * 2  # left-right extent per slice, mm
    depths = body.any(axis=2).sum(axis=1) * dy * 2
    head_like = (widths > 100) & (widths < 220) & (depths > 120) & (depths < 260)
    run = int(head_like.sum() * dz)
    if run >= 60:
        return True, f"head-sized cross-sections over {run} mm"
    widest = float(widths.max()) if widths.size else 0.0
    return False, (f"no head in this volume: the body is {widest:.0f} mm wide and no run of head-sized "
                   f"cross-sections (100-220 mm wide) is at least 60 mm long")


@dataclass(frozen=True)
class PrivacyEvidence:
    """Which renderings and detector settings found what."""

    rows: list[dict]
    renders: dict[str, np.ndarray]
    verdict: str
    level: str  # "likely", "possible" or "not found"


def privacy_check(volume, *, level: float = -300.0, azimuths: tuple[float, ...] = (-25.0, 0.0, 25.0)) -> PrivacyEvidence:
    """Render the skin from a few angles and lightings and look for faces and eyes.

    Cascades trained on photographs are weak on renderings, so detection uses looser,
    render-tuned settings (equalised histogram, finer scale steps, fewer neighbours)
    as well as the defaults, and every combination is reported.
    """
    lights = {"front light": (0.0, 0.0, 1.0), "light from above-left": (-0.5, 0.5, 0.7)}
    settings = {"default (1.1, 5)": dict(scale_factor=1.1, min_neighbors=5, equalize=False),
                "tuned for renders (1.05, 3, equalised)": dict(scale_factor=1.05, min_neighbors=3, equalize=True)}
    rows, renders = [], {}
    for az in azimuths:
        for lname, lvec in lights.items():
            img = render_skin(volume, level=level, azimuth=az, light=lvec)
            key = f"{az:+.0f}°, {lname}"
            renders[key] = img
            side = max(24, min(img.shape) // 8)
            for sname, kw in settings.items():
                faces = detect_faces(img, min_size=(side, side), max_side=None, **kw)
                eyes = sum(len(detect_eyes(img, f, min_neighbors=3)) for f in faces[:1])
                profile = detect_faces(img, cascade="profileface", min_size=(side, side), max_side=None, **kw)
                rows.append({"View": f"{az:+.0f}°", "Lighting": lname, "Detector settings": sname,
                             "Frontal faces": int(len(faces)), "Eyes in the best face": int(eyes),
                             "Profile faces": int(len(profile))})
    with_face = [r for r in rows if r["Frontal faces"] or r["Profile faces"]]
    strong = [r for r in with_face if r["Eyes in the best face"] > 0]
    views = {r["View"] for r in with_face}
    if strong and len(views) >= 2:
        lvl = "likely"
        verdict = (f"A face was found in {len(with_face)} of {len(rows)} renderings ({len(views)} view angles"
                   f"{', with eyes' if strong else ''}): people can be recognised from renderings like these. "
                   f"Treat this series as identifiable; deface it before sharing.")
    elif with_face:
        lvl = "possible"
        verdict = (f"A face was found in {len(with_face)} of {len(rows)} renderings, from one angle only: "
                   f"recognition is possible. Treat the series as potentially identifiable.")
    else:
        lvl = "not found"
        verdict = (f"No face found in {len(rows)} renderings. This is not proof of anonymity: the detectors "
                   f"were trained on photographs and miss many renderings.")
    return PrivacyEvidence(rows, renders, verdict, lvl)
