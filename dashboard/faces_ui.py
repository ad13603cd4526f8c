"""The face detection page: photo input, detector settings, anonymisation, the CT privacy check."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from core import Volume, hu
from core.face_check import PrivacyEvidence, has_head, privacy_check
from core.faces import blur_regions, detect_eyes, detect_faces_scored
from core.head_sample import head_ct
from core.memory import OverBudget, server_budget
from core.png import png_bytes
from dashboard import state
from dashboard.owner import session_owner
from dashboard.text import md_escape

SOURCE, SAMPLE, UPLOAD = "faces_source", "faces_sample", "faces_upload"
CASCADE, SCALE, NEIGHBORS, MINSIZE, EQUALIZE, EYES = (
    "faces_cascade", "faces_scale", "faces_neighbors", "faces_min_size", "faces_equalize", "faces_eyes")
METHOD, STRENGTH, EXTRA = "faces_method", "faces_strength", "faces_extra_boxes"
CHECK, CT_SOURCE = "faces_ct_check", "faces_ct_source"
PERSISTENT = (SOURCE, SAMPLE, CASCADE, SCALE, NEIGHBORS, MINSIZE, EQUALIZE, EYES, METHOD, STRENGTH, EXTRA, CT_SOURCE)
state.persist(*PERSISTENT)
CT_SOURCES = ("Current series", "Built-in synthetic head")
DETECTORS = {"frontalface_default": "Frontal", "frontalface_alt": "Frontal (alt)",
             "frontalface_alt2": "Frontal (alt 2)", "profileface": "Profile"}
SAMPLES = {"Astronaut (Eileen Collins)": "astronaut", "Cameraman": "camera", "Cat (Chelsea)": "chelsea",
           "Coffee cup": "coffee"}
MAX_PIXELS = 50_000_000


def init() -> None:
    for key, value in ((SOURCE, "Sample photo"), (SAMPLE, next(iter(SAMPLES))), (CASCADE, "frontalface_default"),
                       (SCALE, 1.1), (NEIGHBORS, 5), (MINSIZE, 30), (EQUALIZE, False), (EYES, False),
                       (METHOD, "blur"), (STRENGTH, 1.0), (EXTRA, ""), (CT_SOURCE, CT_SOURCES[0])):
        st.session_state.setdefault(key, value)


@st.cache_resource(show_spinner=False)
def sample_image(name: str) -> np.ndarray:
    """scikit-image's bundled sample photos (no download); shared: they are public images."""
    import skimage.data

    img = getattr(skimage.data, name)()
    img.flags.writeable = False
    return img


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Any decoded image (integer of any width, float, grey or colour) stretched to uint8.

    OpenCV's normalize refuses 32-bit unsigned and 64-bit integers, so this is plain NumPy.
    """
    if arr.dtype == np.uint8:
        return arr
    values = arr.astype(np.float32)
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    out = np.zeros(values.shape, dtype=np.uint8)
    if hi > lo:
        values -= lo  # in place: one float copy at most
        values *= 255.0 / (hi - lo)
        np.clip(values, 0, 255, out=values)
        np.rint(values, out=values)
        out[finite] = values[finite]
    return out


class ImageError(ValueError):
    """An upload that is not a usable image; ``str()`` says why in words."""


def _decoded_nbytes(pixels: int, samples: int, itemsize: int) -> int:
    # The decoded array, a float32 copy to stretch it, and the uint8 result.
    return pixels * samples * (itemsize + 4 + 1)


def _read_dicom_image(data: bytes, owner: str) -> np.ndarray:
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples, bits = int(ds.get("SamplesPerPixel") or 1), int(ds.get("BitsAllocated") or 8)
    except Exception:  # noqa: BLE001 - a hostile file can make pydicom raise anything; the reason is in words
        raise ImageError("the DICOM file is cut short or damaged, or it holds no image") from None
    if rows * cols > MAX_PIXELS:
        raise ImageError(f"its {cols} x {rows} pixels are above this page's limit of {MAX_PIXELS:,}")
    if "PixelData" not in ds:
        raise ImageError("the DICOM file holds no image (no pixel data)")
    need = _decoded_nbytes(rows * cols, samples, max(1, bits // 8))
    with server_budget().reserved(need, owner=owner, what="decoding this image"):
        try:
            arr = pixel_array(ds, index=0 if int(ds.get("NumberOfFrames") or 1) > 1 else None)
        except Exception:  # noqa: BLE001 - as above: pydicom's own text would show bytes and internals
            got, expected = len(ds.PixelData or b""), rows * cols * samples * max(1, bits // 8)
            uncompressed = ds.file_meta.get("TransferSyntaxUID", "") in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
            if uncompressed and got < expected:
                raise ImageError(f"the file is cut short: it holds {got:,} bytes of pixels where its header "
                                 f"describes {expected:,}") from None
            raise ImageError("the image in this DICOM file cannot be decoded (an unsupported compression, "
                             "or damaged pixel data)") from None
        return to_uint8(arr)


def read_image(data: bytes, *, owner: str = "no-session") -> np.ndarray:
    """A photo (PNG/JPEG) or a DICOM image (secondary capture, photo) as RGB or grey uint8, in memory.

    The memory it needs is reserved against the server's budget (for ``owner``) first.

    Raises
    ------
    ImageError
        With the reason in words when the file is not a readable image or is too large.
    OverBudget
        When the server's memory budget cannot hold the decoded image now.
    """
    if len(data) >= 132 and data[128:132] == b"DICM":
        return _read_dicom_image(data, owner)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"its {im.width} x {im.height} pixels are above this page's limit of {MAX_PIXELS:,}")
            with server_budget().reserved(_decoded_nbytes(im.width * im.height, 4, 1), owner=owner,
                                          what="decoding this photo"):
                return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError("not a PNG, JPEG or DICOM image, or the file is cut short") from None


@st.cache_resource(scope="session", max_entries=2, show_spinner=False)
def uploaded_image(_data: bytes, key: tuple) -> np.ndarray:
    """The decoded upload, once per file (``key`` names it): not again on every rerun.

    Its bytes stay reserved against the server's budget for as long as the cache holds it.
    """
    owner = session_owner()
    img = read_image(_data, owner=owner)
    budget = server_budget()
    budget.hold(img, budget.reserve(img.nbytes, owner=owner, what="this photo"))
    img.flags.writeable = False
    return img


def source_ui() -> tuple[np.ndarray | None, tuple]:
    """The photo to work on, and a key naming it (its first part is a safe base for file names)."""
    choice = st.radio("Photo", ["Sample photo", "Upload"], key=SOURCE, horizontal=True, persist_state="session")
    if choice == "Sample photo":
        name = st.selectbox("Sample", list(SAMPLES), key=SAMPLE, persist_state="session")
        return sample_image(SAMPLES[name]), (SAMPLES[name],)
    up = st.file_uploader("A PNG, JPEG or DICOM image", type=["png", "jpg", "jpeg", "dcm", "dicom"], key=UPLOAD)
    if up is None:
        st.info("Upload a photo, or use a sample photo.")
        return None, ("upload",)
    key = ("upload", up.file_id)
    # File names are PHI too: named only when the visitor has revealed PHI.
    label = f"**{md_escape(up.name)}**" if state.show_phi() else "The uploaded file"
    try:
        return uploaded_image(up.getvalue(), key), key
    except ImageError as exc:
        st.error(f"{label} cannot be used: {md_escape(exc, max_len=None)}. Upload a PNG, JPEG or DICOM image.")
    except OverBudget as exc:
        st.error(f"{label} is not decoded now: {md_escape(exc, max_len=None)}.")
    return None, key


def settings_ui() -> dict:
    c1, c2, c3, c4 = st.columns(4)
    cascade = c1.selectbox("Detector", list(DETECTORS), key=CASCADE, format_func=DETECTORS.__getitem__,
                           persist_state="session",
                           help="OpenCV's Haar cascades: Lienhart's three frontal face detectors, and one for "
                           "faces in profile.")
    scale = c2.slider("Size step", 1.01, 1.5, step=0.01, key=SCALE, persist_state="session",
                      help="Ratio between the face sizes searched (OpenCV's scale factor): smaller finds more, "
                      "slower.")
    neighbors = c3.slider("Hits to keep a face", 0, 15, key=NEIGHBORS, persist_state="session",
                          help="Overlapping hits needed to keep a face (OpenCV's minimum neighbours): higher means "
                          "fewer false faces.")
    min_size = c4.slider("Smallest face (pixels)", 10, 300, key=MINSIZE, persist_state="session")
    d1, d2 = st.columns(2)
    equalize = d1.toggle("Equalise the histogram", key=EQUALIZE, persist_state="session")
    eyes = d2.toggle("Find eyes in each face", key=EYES, persist_state="session")
    return dict(cascade=cascade, scale_factor=float(scale), min_neighbors=int(neighbors),
                min_size=(int(min_size), int(min_size)), equalize=bool(equalize), eyes=bool(eyes))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, eyes: list[np.ndarray]) -> np.ndarray:
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.array(image[:, :, :3], copy=True)
    t = max(2, min(out.shape[:2]) // 250)
    for n, (x, y, w, h) in enumerate(boxes):
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), (79, 195, 247), t)
        cv2.putText(out, str(n + 1), (int(x) + 3, int(y) + 6 + 10 * t), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * t,
                    (255, 235, 59), t, cv2.LINE_AA)
    for group in eyes:
        for x, y, w, h in group:
            cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), (129, 199, 132), max(1, t // 2))
    return out


@dataclass(frozen=True)
class Detections:
    """The faces found in one image with one group of settings."""

    boxes: np.ndarray  # (N, 4) int: x, y, w, h, most confident first
    scores: np.ndarray  # (N,) float
    eyes: list[np.ndarray]  # per face, (M, 4) int; empty when eyes were not asked for
    ms: float  # time taken


@dataclass(frozen=True)
class CtCheck:
    """The last CT face check of this session, and which volume it was for."""

    volume_key: str
    head: bool
    reason: str
    evidence: PrivacyEvidence | None  # None when no head was found


@st.cache_resource(scope="session", max_entries=8, show_spinner=False)
def detections(_image: np.ndarray, key: tuple, settings: tuple) -> Detections:
    """Boxes, confidences, eyes and the time taken, once per image and settings."""
    kw = dict(settings)
    find_eyes = kw.pop("eyes")
    start = time.perf_counter()
    boxes, scores = detect_faces_scored(_image, **kw)
    eyes = [detect_eyes(_image, b) for b in boxes] if find_eyes else []
    return Detections(boxes, scores, eyes, (time.perf_counter() - start) * 1000)


def detect_ui(image: np.ndarray, key: tuple, settings: dict) -> np.ndarray:
    found = detections(image, key, tuple(sorted(settings.items())))
    boxes, scores, eyes = found.boxes, found.scores, found.eyes
    h, w = image.shape[:2]
    st.markdown(f"**{len(boxes)} face{'s' if len(boxes) != 1 else ''} found** in this {w} x {h} pixel photo"
                f"{', numbered from the most confident' if len(boxes) > 1 else ''}.")
    st.image(draw_boxes(image, boxes, eyes), width=min(w, 760))
    if len(boxes):
        st.dataframe(pd.DataFrame({"Face": np.arange(1, len(boxes) + 1), "x": boxes[:, 0], "y": boxes[:, 1],
                                   "w": boxes[:, 2], "h": boxes[:, 3], "Confidence": np.round(scores, 2),
                                   **({"Eyes": [len(e) for e in eyes]} if eyes else {})}),
                     hide_index=True, key="faces_table")
    return boxes


def parse_boxes(text: str) -> tuple[np.ndarray, list[str]]:
    """Boxes typed as ``x, y, w, h`` one per line; returns the boxes and the lines not understood."""
    boxes, bad = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            vals = [int(round(float(v))) for v in line.replace(";", ",").split(",")]
        except ValueError:
            bad.append(line)
            continue
        if len(vals) != 4 or vals[2] <= 0 or vals[3] <= 0:
            bad.append(line)
            continue
        boxes.append(vals)
    return np.array(boxes, dtype=int).reshape(-1, 4), bad


def anonymise_ui(image: np.ndarray, boxes: np.ndarray, key: tuple) -> None:
    base = key[0]
    c1, c2 = st.columns(2)
    method = c1.radio("Method", ["blur", "pixelate"], key=METHOD, horizontal=True, persist_state="session",
                      format_func=str.capitalize)
    strength = c2.slider("Strength", 0.5, 3.0, step=0.1, key=STRENGTH, persist_state="session")
    extra_text = st.text_area("More boxes to hide (x, y, w, h per line)", key=EXTRA, persist_state="session",
                              help="Faces the detector missed, name tags, anything else identifying.")
    extra, bad = parse_boxes(extra_text)
    if bad:
        st.warning(f"Not understood, so not applied: {md_escape(', '.join(repr(b) for b in bad))}. Write x, y, w, h.")
    all_boxes = np.concatenate([boxes.reshape(-1, 4), extra]) if len(extra) else boxes.reshape(-1, 4)
    if len(all_boxes) == 0:
        st.caption("No face found and no box typed: nothing to hide.")
        return
    out = blur_regions(image, all_boxes, method=method, strength=strength)
    n = len(all_boxes)
    st.image(out, caption=f"{n} region{'s' if n != 1 else ''} {'blurred' if method == 'blur' else 'pixelated'}",
             width=min(out.shape[1], 760))
    st.download_button("Download the anonymised image (PNG)", png_bytes(out), f"{base}_anonymised.png", "image/png",
                       key="faces_dl", on_click="ignore", icon=":material/download:")


def ct_check_ui(vol: Volume | None) -> None:
    if st.radio("CT to check", CT_SOURCES, key=CT_SOURCE, horizontal=True, persist_state="session",
                help="The synthetic head (a skull, brain, and a face: nose, orbits, lips, ears) is built in, "
                     "with its label map; the check finds its face.") == CT_SOURCES[1]:
        vol = head_ct()
    if vol is None:
        st.info("Load a head CT on **Load a study** to check it.")
        return
    if st.button("Check this CT for a recognisable face", key="faces_check_button", icon=":material/face:"):
        with st.spinner("Rendering the skin and searching it…"):
            head, reason = has_head(vol)
            st.session_state[CHECK] = CtCheck(vol.key, head, reason, privacy_check(vol) if head else None)
    done = st.session_state.get(CHECK)
    if done is None or done.volume_key != vol.key:
        st.caption(f"Renders the skin surface ({hu.SKIN:g} HU) from three angles and two lightings, then runs the "
                   "detectors with their defaults and with settings tuned for renderings.")
        return
    head, reason, evidence = done.head, done.reason, done.evidence
    if not head:
        st.info(f"Not checked: {md_escape(reason, max_len=None)}.")
        return
    {"likely": st.error, "possible": st.warning, "not found": st.info}[evidence.level](evidence.verdict)
    st.dataframe(evidence_table(evidence), hide_index=True, height="content", key="faces_evidence")  # all 12 rows
    st.caption("The renderings, with what the detectors found: frontal faces in blue, profiles in orange.")
    figures = rendering_figures(evidence)
    azimuths = sorted({azimuth for azimuth, _ in figures})
    cols = st.columns(len(azimuths))
    for (azimuth, lighting), img in figures.items():
        cols[azimuths.index(azimuth)].image(img, caption=f"{azimuth:+.0f}°, {lighting}", width="stretch")
    front = evidence.renders.get((0.0, "front light"))
    if front is not None:
        st.download_button("Download the front rendering (PNG)", lambda: png_bytes(front), "skin_render_front.png",
                           "image/png", key="faces_dl_render", on_click="ignore", icon=":material/download:")


FRONTAL_COLOR = (79, 195, 247)  # RGB, as the photo's boxes
PROFILE_COLOR = (255, 167, 38)


def rendering_figures(evidence: PrivacyEvidence) -> dict[tuple[float, str], np.ndarray]:
    """Each rendering as RGB with the boxes every detector setting found on it, all at one size.

    Renderings turned to the side are wider than the front view: each is centred on a black
    canvas the size of the largest, so that the grid's pictures share one scale.
    """
    h = max(img.shape[0] for img in evidence.renders.values())
    w = max(img.shape[1] for img in evidence.renders.values())
    out = {}
    for key, img in evidence.renders.items():
        canvas = np.zeros((h, w, 3), dtype=np.uint8)
        top, left = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
        canvas[top:top + img.shape[0], left:left + img.shape[1]] = img[:, :, None] if img.ndim == 2 else img[:, :, :3]
        t = max(2, min(h, w) // 150)
        for d in evidence.detections:
            if (d.azimuth, d.lighting) != key:
                continue
            for boxes, color in ((d.frontal_boxes, FRONTAL_COLOR), (d.profile_boxes, PROFILE_COLOR)):
                for x, y, bw, bh in boxes:
                    cv2.rectangle(canvas, (left + x, top + y), (left + x + bw - 1, top + y + bh - 1), color, t)
        out[key] = canvas
    return out


def evidence_table(evidence: PrivacyEvidence) -> pd.DataFrame:
    """One row per rendering and detector settings: what was found."""
    return pd.DataFrame([{"View": f"{d.azimuth:+.0f}°", "Lighting": d.lighting, "Detector settings": d.settings,
                          "Frontal faces": d.frontal_faces, "Eyes in the best face": d.eyes,
                          "Profile faces": d.profile_faces} for d in evidence.detections])
