"""core.cohort: a plain serial loop of `measure_study` against a Dask LocalCluster of 2 workers, in one run.

Run:  python benchmarks/bench_cohort.py [--studies 24] [--slices 150] [--size 512] [--workers 2]

Generates (once, under --cache) ``--studies`` CT studies of ``--slices`` x ``--size`` x ``--size``
(the built-in sample at full size, 2.5 mm slices of 0.7 mm pixels as in the Data Science Bowl,
noise and lung density varied per study), then measures every study twice: in a plain serial
loop in a fresh process, and with :func:`core.cohort.run_cohort` on a LocalCluster of
``--workers`` single-threaded workers. Prints studies per minute, the speed-up, peak memory per
process above its baseline after imports (as a multiple of one study's int16 volume), whether
the rows are identical, and what a 1,595-study cohort (DSB 2017) would take.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DSB_STUDIES = 1595


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def warm_up() -> float:
    """Import what a study needs, then return the process's RSS: the baseline for its peak."""
    import scipy.ndimage  # noqa: F401

    import core.cohort  # noqa: F401
    import core.loader  # noqa: F401
    import core.lungs  # noqa: F401
    return rss_mb()


def generate(cache: Path, *, studies: int, slices: int, size: int) -> Path:
    import numpy as np

    from tests.factory import ct_series, sample_at_full_size

    root = cache / f"cohort_{studies}x{slices}x{size}"
    done = root / ".complete"
    if done.exists():
        return root
    base = sample_at_full_size(slices=slices, size=size)
    lung = (base > -1000) & (base < -500)
    for i in range(studies):
        vol = base.copy()
        vol[lung] -= np.int16(8 * i)  # denser to emptier lungs: emphysema index and Perc15 vary
        vol += np.random.default_rng(i).integers(-20, 21, vol.shape, dtype=np.int16)
        folder = root / f"study_{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in ct_series(vol, spacing=(2.5, 0.7, 0.7), series_uid=f"1.2.826.0.1.3680043.9.{i}",
                                    names=lambda k: f"{k:04d}.dcm", slice_thickness=2.5):
            (folder / name).write_bytes(data)
    done.write_text("ok")
    return root


def serial_child(root: str, queue) -> None:
    """The plain loop, in a fresh process: rows, wall time, peak RSS above the baseline."""
    from core.cohort import discover_studies, measure_study

    base = warm_up()
    start = time.perf_counter()
    rows = [measure_study(s) for s in discover_studies(root)]
    queue.put({"rows": rows, "seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb() - base})


def run_serial(root: Path) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=serial_child, args=(str(root), queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def run_dask(root: Path, workers: int) -> dict:
    from distributed import Client

    from core.cohort import local_cluster, run_cohort

    with local_cluster(workers, memory_limit="4GB") as cluster, Client(cluster) as client:  # as the CLI makes it
        base = client.run(warm_up)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = run_cohort(root, out, scheduler=cluster.scheduler_address)
            seconds = time.perf_counter() - start
        peaks = client.run(peak_rss_mb)
    return {"rows": result.rows, "seconds": seconds, "peak_mb": [peaks[w] - base[w] for w in sorted(peaks)]}


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in sorted(r.items()) if k != "seconds"} for r in sorted(rows, key=lambda r: r["study"])]


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=24)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hounsfield_bench_cohort"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    t = time.perf_counter()
    root = generate(Path(args.cache), studies=args.studies, slices=args.slices, size=args.size)
    print(f"cohort: {args.studies} studies of {args.slices}x{args.size}x{args.size} at {root} "
          f"(ready in {time.perf_counter() - t:.0f} s); {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    int16_mb = args.slices * args.size * args.size * 2 / 2**20

    serial = run_serial(root)
    dask = run_dask(root, args.workers)
    n = args.studies
    s_rate, d_rate = n / serial["seconds"] * 60, n / dask["seconds"] * 60
    identical = comparable(serial["rows"]) == comparable(dask["rows"])
    ok = sum(r["status"] == "ok" for r in serial["rows"])
    per_study = serial["seconds"] / n
    figures = {
        "studies": n, "shape": [args.slices, args.size, args.size], "ok": ok, "cores": os.cpu_count(),
        "serial_seconds": round(serial["seconds"], 1), "dask_seconds": round(dask["seconds"], 1),
        "serial_per_minute": round(s_rate, 2), "dask_per_minute": round(d_rate, 2),
        "speedup": round(serial["seconds"] / dask["seconds"], 2),
        "serial_peak_mb": round(serial["peak_mb"]), "dask_peak_mb_per_worker": [round(p) for p in dask["peak_mb"]],
        "int16_volume_mb": round(int16_mb, 1), "identical": identical, "seconds_per_study": round(per_study, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    print(f"\n{'':28}{'serial loop':>14}{f'LocalCluster x{args.workers}':>20}")
    print(f"{'wall time':28}{serial['seconds']:>12.1f} s{dask['seconds']:>18.1f} s")
    print(f"{'studies per minute':28}{s_rate:>14.1f}{d_rate:>20.1f}")
    print(f"{'speed-up':28}{'1.00x':>14}{figures['speedup']:>19.2f}x")
    peaks = ", ".join(f"{p:.0f}" for p in dask["peak_mb"])
    mean_s = sum(r["seconds"] for r in serial["rows"]) / n
    mean_d = sum(r["seconds"] for r in dask["rows"]) / n
    print(f"{'one study, mean (s)':28}{mean_s:>14.2f}{mean_d:>20.2f}  (higher on the workers: cores shared)")
    figures["study_seconds_serial"], figures["study_seconds_dask"] = round(mean_s, 2), round(mean_d, 2)
    print(f"{'peak memory (MB above base)':28}{serial['peak_mb']:>14.0f}{peaks:>20}")
    print(f"{'  x one int16 volume':28}{serial['peak_mb'] / int16_mb:>14.1f}"
          f"{max(dask['peak_mb']) / int16_mb:>20.1f}")
    print(f"rows identical to the serial loop: {identical} ({ok}/{n} ok); load average now "
          f"{os.getloadavg()[0]:.2f} (other work on the machine slows both columns)")
    print(f"\n{DSB_STUDIES} studies (DSB 2017) at {per_study:.1f} s per study: "
          f"serial {hours(DSB_STUDIES * per_study)}; "
          f"here with {args.workers} workers {hours(DSB_STUDIES * dask['seconds'] / n)}; on a cluster of N "
          f"single-threaded workers about {hours(DSB_STUDIES * per_study)} / N "
          f"(e.g. N=32: {hours(DSB_STUDIES * per_study / 32)}), plus reading the data over the shared file system.")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
