"""hu_histogram against numpy.histogram on a 512x512x300 int16 CT, and the figure's payload.

Run:  python benchmarks/bench_histogram.py [--runs 5]

The volume is the built-in sample resampled to 512x512x300 (a realistic HU mix: air, lung,
fat, soft tissue, bone). Methods alternate within each run; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from core.histogram import bin_edges, hu_histogram, value_counts
    from dashboard.histogram_ui import figure
    from tests.factory import sample_at_full_size

    vol = sample_at_full_size(noise=5)
    edges = bin_edges(10, (-1100, 2000))
    n_bins = len(edges) - 1
    methods = {
        "hu_histogram (OpenCV value counts)": lambda: hu_histogram(vol, bin_width=10, hu_range=(-1100, 2000)),
        "numpy.histogram, explicit edges": lambda: np.histogram(vol, bins=edges),
        "numpy.histogram, bins=N, range=": lambda: np.histogram(vol, bins=n_bins, range=(-1100, 2000)),
    }
    times: dict[str, list[float]] = {m: [] for m in methods}
    results = {}
    for _ in range(args.runs):
        for name, fn in methods.items():
            t = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t)
    ours = results["hu_histogram (OpenCV value counts)"][0]
    assert np.array_equal(ours, results["numpy.histogram, explicit edges"][0]), "counts differ from numpy"
    print(f"512x512x300 int16 ({vol.nbytes / 1e6:.0f} MB), bin width 10 HU over -1100..2000, median of {args.runs}")
    base = statistics.median(times["numpy.histogram, explicit edges"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<38}{med * 1000:>8.1f} ms {med / base:>6.2f}x numpy(edges)")
    print("  counts identical to numpy.histogram with the same edges: yes")
    vc = value_counts(vol)
    for bw in (10, 1):
        counts, e = hu_histogram(vc, bin_width=bw, hu_range=(-1100, 3100))
        fig = figure(counts, e, log=False, cumulative=False, bands=True, window=(40, 400), unit="HU",
                     overlay=("other", counts))
        print(f"  figure payload, bin width {bw:>2} HU, with bands, window and an overlay: "
              f"{len(fig.to_json().encode()) / 1000:.1f} KB")


if __name__ == "__main__":
    main()
