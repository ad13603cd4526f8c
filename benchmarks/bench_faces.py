"""Face detection on a 1-megapixel photo vs OpenCV's plain call; skin rendering of a 512x512x300 CT.

Run:  python benchmarks/bench_faces.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    import skimage.data

    from core import Volume
    from core.faces import detect_faces
    from core.skin import render_skin
    from tests.factory import sample_at_full_size

    photo = cv2.resize(skimage.data.astronaut(), (1000, 1000), interpolation=cv2.INTER_CUBIC)
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    plain = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    methods = {
        "OpenCV detectMultiScale (1.1, 5, 30x30), full res":
            lambda: plain.detectMultiScale(gray, 1.1, 5, minSize=(30, 30)),
        "detect_faces (same settings, 400 px working copy)": lambda: detect_faces(photo),
    }
    times: dict[str, list[float]] = {m: [] for m in methods}
    found = {}
    for _ in range(args.runs):
        for name, fn in methods.items():
            t = time.perf_counter()
            found[name] = fn()
            times[name].append(time.perf_counter() - t)
    print(f"1000 x 1000 photo (the astronaut, upscaled), median of {args.runs}, alternating")
    base = statistics.median(times[next(iter(methods))])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<52}{med * 1000:>7.1f} ms {med / base:>6.2f}x  faces: {len(found[name])}")
    vol = Volume(voxels=sample_at_full_size(), spacing=(1.0, 0.7, 0.7), series_uid="b", modality="CT", units="HU")
    rt = []
    for _ in range(args.runs):
        t = time.perf_counter()
        img = render_skin(vol)
        rt.append(time.perf_counter() - t)
    print(f"  render_skin, 512x512x300 CT, front view: {statistics.median(rt) * 1000:.0f} ms "
          f"({img.shape[1]} x {img.shape[0]} px)")


if __name__ == "__main__":
    main()
