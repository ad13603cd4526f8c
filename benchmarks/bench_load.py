"""load_series against SimpleITK's ImageSeriesReader (GDCM) on a 512x512x300 CT series.

Run:  python benchmarks/bench_load.py [--slices 300] [--runs 5]

Each measurement runs in a fresh subprocess (so peak RSS is that reader's alone),
alternating readers, median of --runs runs. Peak memory is reported above the
interpreter's baseline after imports, as a multiple of the volume's int16 size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, os
    sys.path.insert(0, {root!r})
    mode, folder = sys.argv[1], sys.argv[2]
    import numpy as np
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    if mode == "sitk":
        import SimpleITK as sitk
    else:
        from core import load_series
    payload = None
    if mode == "ours-bytes":
        payload = [(os.path.basename(f), open(f, "rb").read()) for f in files]
    def rss_kb():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    base = rss_kb()
    t = time.perf_counter()
    if mode == "sitk":
        r = sitk.ImageSeriesReader()
        r.SetFileNames(sitk.ImageSeriesReader().GetGDCMSeriesFileNames(folder))
        img = r.Execute()
        arr = sitk.GetArrayViewFromImage(img)
        shape = arr.shape
    elif mode == "ours-path":
        res = load_series([folder])
        shape = res.volumes[0].voxels.shape
    else:
        res = load_series(payload)
        shape = res.volumes[0].voxels.shape
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"time": dt, "peak_above_base_kb": peak - base, "shape": list(shape)}}))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from tests.factory import ct_series

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        n, size = args.slices, args.size
        yy, xx = np.mgrid[:size, :size]
        disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.45 * size) ** 2
        for k in range(n):
            hu = np.where(disk, rng.integers(-1000, 1500, size=(size, size)), -2000).astype(np.int16)
            (name, data), = ct_series(hu[None], spacing=(1.25, 0.7, 0.7), origin=(0, 0, 1.25 * k),
                                      names=lambda _: "x")
            (folder / f"IM{(k * 7919) % n:05d}").write_bytes(data)  # names not in slice order
        child = Path(tmp) / "child.py"
        child.write_text(CHILD.format(root=str(ROOT)))
        int16_mb = n * size * size * 2 / 1e6
        modes = ["sitk", "ours-path", "ours-bytes"]
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for _ in range(args.runs):
            for m in modes:
                out = subprocess.run([sys.executable, str(child), m, str(folder)],
                                     capture_output=True, text=True, check=True)
                results[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {m: statistics.median(r["time"] for r in results[m]) for m in modes}
    mem = {m: statistics.median(r["peak_above_base_kb"] for r in results[m]) / 1e3 for m in modes}
    print(f"{n} slices of {size}x{size} int16 ({int16_mb:.0f} MB as int16), median of {args.runs} runs, alternating")
    print(f"{'reader':<34}{'time s':>8}{'vs SimpleITK':>14}{'peak MB':>10}{'x int16':>9}")
    labels = {"sitk": "SimpleITK ImageSeriesReader (GDCM)", "ours-path": "load_series, folder path",
              "ours-bytes": "load_series, in-memory bytes"}
    for m in modes:
        print(f"{labels[m]:<34}{med[m]:>8.2f}{med[m] / med['sitk']:>13.2f}x{mem[m]:>10.0f}{mem[m] / int16_mb:>8.2f}x")


if __name__ == "__main__":
    main()
