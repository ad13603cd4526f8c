"""The CT face check: could a person be recognised from renderings of this series' skin?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core import hu
from core.faces import detect_eyes, detect_faces
from core.skin import render_skin

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["Detection", "PrivacyEvidence", "angle_text", "face_verdict", "has_head", "privacy_check"]


def has_head(volume: Volume, *, level: float = hu.SKIN) -> tuple[bool, str]:
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
class Detection:
    """What the detectors found on one rendering with one group of settings."""

    azimuth: float  # degrees the head was turned (see render_skin)
    lighting: str  # name of the lighting
    settings: str  # name of the detector settings
    frontal_faces: int
    eyes: int  # in the most confident frontal face
    profile_faces: int
    frontal_boxes: tuple[tuple[int, int, int, int], ...] = ()  # x, y, w, h in the rendering's pixels
    profile_boxes: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def found_face(self) -> bool:
        return bool(self.frontal_faces or self.profile_faces)


@dataclass(frozen=True)
class PrivacyEvidence:
    """Which renderings and detector settings found what, and the verdict drawn from it."""

    detections: list[Detection]
    renders: dict[tuple[float, str], np.ndarray]  # (azimuth, lighting) -> the rendering, (H, W) uint8
    verdict: str
    level: str  # "likely", "possible" or "not found"


LIGHTS = {"front light": (0.0, 0.0, 1.0), "light from above-left": (-0.5, 0.5, 0.7)}
# Named for the evidence table; the numbers are OpenCV's scale factor and minimum neighbours.
SETTINGS: dict[str, dict[str, Any]] = {
    "as for photos": {"scale_factor": 1.1, "min_neighbors": 5, "equalize": False},
    "tuned for renderings": {"scale_factor": 1.05, "min_neighbors": 3, "equalize": True},
}


def privacy_check(volume: Volume, *, level: float = hu.SKIN,
                  azimuths: tuple[float, ...] = (-25.0, 0.0, 25.0)) -> PrivacyEvidence:
    """Render the skin from a few angles and lightings and look for faces and eyes.

    Cascades trained on photographs are weak on renderings, so detection uses looser,
    render-tuned settings (equalised histogram, finer scale steps, fewer neighbours)
    as well as the defaults, and every combination is reported.
    """
    detections, renders = [], {}
    for az in azimuths:
        for lname, lvec in LIGHTS.items():
            img = render_skin(volume, level=level, azimuth=az, light=lvec)
            renders[(float(az), lname)] = img
            side = max(24, min(img.shape) // 8)
            for sname, kw in SETTINGS.items():
                faces = detect_faces(img, min_size=(side, side), max_side=None, **kw)
                eyes = sum(len(detect_eyes(img, f, min_neighbors=3)) for f in faces[:1])
                profile = detect_faces(img, cascade="profileface", min_size=(side, side), max_side=None, **kw)
                detections.append(Detection(float(az), lname, sname, len(faces), eyes, len(profile),
                                            _boxes(faces), _boxes(profile)))
    lvl, verdict = face_verdict(detections)
    return PrivacyEvidence(detections, renders, verdict, lvl)


def _boxes(found: np.ndarray) -> tuple[tuple[int, int, int, int], ...]:
    return tuple((int(x), int(y), int(w), int(h)) for x, y, w, h in np.asarray(found).reshape(-1, 4))


def angle_text(azimuths: set[float] | list[float]) -> str:
    """View angles in words, in order: ``"-25°, +0° and +25°"`` (as the evidence table writes them)."""
    names = [f"{a:+.0f}°" for a in sorted(set(azimuths))]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def face_verdict(detections: list[Detection]) -> tuple[str, str]:
    """The level ("likely", "possible" or "not found") and the verdict in words.

    Likely: faces from at least two view angles, with eyes in at least one. Possible: a face
    from one angle, or faces without eyes. Not found: no face in any rendering. The verdict
    names the angles of the renderings where a face was found, from the same detections as the
    evidence table, so that the two always agree.
    """
    with_face = [d for d in detections if d.found_face]
    strong = [d for d in with_face if d.eyes > 0]
    views = {d.azimuth for d in with_face}
    n = len(detections)
    where = f"A face was found in {len(with_face)} of {n} renderings, at {angle_text(views) if views else ''}"
    if strong and len(views) >= 2:
        return "likely", (f"{where}, with eyes: people can be recognised from renderings like these. Treat this "
                          f"series as identifiable; deface it before sharing.")
    if with_face:
        how = " only" if len(views) == 1 else ", without eyes"
        return "possible", (f"{where}{how}: recognition is possible. Treat the series as potentially "
                            f"identifiable.")
    return "not found", (f"No face found in {n} renderings. This is not proof of anonymity: the detectors "
                         f"were trained on photographs and miss many renderings.")
