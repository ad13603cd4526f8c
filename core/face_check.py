"""The CT face check: could a person be recognised from renderings of this series' skin?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core import hu
from core.faces import detect_eyes, detect_faces
from core.skin import render_skin

__all__ = ["PrivacyEvidence", "has_head", "privacy_check"]


def has_head(volume, *, level: float = hu.SKIN) -> tuple[bool, str]:
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


def privacy_check(volume, *, level: float = hu.SKIN, azimuths: tuple[float, ...] = (-25.0, 0.0, 25.0)) -> PrivacyEvidence:
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
