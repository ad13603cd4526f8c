"""Load test: concurrent real browser sessions on one server, and memory after upload cycles.

Run:  python benchmarks/bench_sessions.py [--sessions 5] [--slices 300] [--cycles 20]

Part 1, on the fresh server: one session uploads and replaces a 512x512x120 series --cycles
times; the server's resident memory is printed before, after the first cycle and after the
last (it should come back near where it was, not grow per cycle), then after the session closed.

Part 2: --sessions headless Chromium sessions (Playwright, async) open the app at once (the
sample: time to first image), upload a 512x512x<slices> CT series, open the explorer and
scroll 10 slices; one attacker alongside uploads the hostile corpus with the bombs of issue 15
through the page (a 4.8 MB zip holding a 1 GB zip, a deflated file inflating to 1.5 GB,
4096x4096 RLE slices making 1 GB of voxels) and sends 3 files of 290 MB straight to Streamlit's
upload endpoint. Reports failed sessions, p95 time to first image, the server's peak resident
memory during part 2 (VmHWM, reset when part 2 starts) with a 50 ms timeline of its resident
memory, and then, with every session closed, how long the server takes to come back within
150 MB of where it was with one session open on the sample.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def mem_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def user_session(browser, url: str, paths: list[str], results: list[dict]) -> None:
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(300_000)
    rec = {"ok": False}
    try:
        t0 = time.perf_counter()
        await page.goto(url)
        await page.locator('[data-testid="stImage"] img').first.wait_for()
        rec["first_image_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
        await page.get_by_text(f"{len(paths)} uploaded files: 1 series found").wait_for()
        rec["upload_s"] = time.perf_counter() - t1
        await page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Volume explorer").click()
        await page.get_by_text("At the crosshair:").wait_for()
        await page.wait_for_selector(IDLE)
        canvas = page.locator('.hf-view[data-axis="0"] canvas')
        await page.locator('.hf-view[data-axis="0"] canvas[data-painted]').wait_for()
        first = int(await canvas.get_attribute("data-index"))
        await page.get_by_role("slider", name="Axial slice").focus()
        for _ in range(10):
            await page.keyboard.press("ArrowRight")
            await page.wait_for_timeout(100)
        await expect(canvas).to_have_attribute("data-index", str(first + 10))
        await page.wait_for_selector(IDLE)
        rec["ok"] = await page.locator('[data-testid="stException"]').count() == 0
    except Exception as exc:  # noqa: BLE001 - a failed session is a result to report
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        await ctx.close()
    results.append(rec)


async def hostile_session(browser, url: str, paths: list[str], results: list[dict]) -> None:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    page.set_default_timeout(300_000)
    rec = {"ok": False, "hostile": True}
    try:
        await page.goto(url)
        await page.wait_for_selector(IDLE)
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
        await page.get_by_text(re.compile(rf"^{len(paths)} uploaded files: \d+ series found")).wait_for()
        rec["ok"] = await page.locator('[data-testid="stException"]').count() == 0
    except Exception as exc:  # noqa: BLE001
        rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        await ctx.close()
    results.append(rec)


def straight_uploads(url: str, n: int, mb: int) -> list[int]:
    """A session that never touches the page's widgets PUTs ``n`` files straight to the upload endpoint."""
    from tests.bombs import Visitor

    visitor = Visitor(url)
    blob = bytes(mb * 1024**2)
    try:
        return [visitor.put(f"straight-{i}", blob) for i in range(n)]
    finally:
        visitor.close()


def write_bombs(folder: Path) -> list[str]:
    """The bombs of issue 15 at full size, written as streams."""
    from tests.bombs import deflate_bomb, nested_zip_bomb, rle_bomb

    folder.mkdir(parents=True, exist_ok=True)
    paths = [nested_zip_bomb(folder / "nested.zip", inner_mb=1000),
             deflate_bomb(folder / "deflate.dcm", inflated_mb=1500)]
    return [str(p) for p in [*paths, *rle_bomb(folder / "rle", slices=30)]]


async def after_sessions_end(pid: int, reference: float, *, limit_s: float = 90.0) -> str:
    """Poll the server's memory once a second after every session has closed."""
    t0 = time.perf_counter()
    start = mem_mb(pid)
    back, at_60 = None, None
    while time.perf_counter() - t0 < limit_s:
        now = mem_mb(pid)
        if back is None and now <= reference + 150:
            back = time.perf_counter() - t0
        if at_60 is None and time.perf_counter() - t0 >= 60:
            at_60 = now
        if back is not None and at_60 is not None:
            break
        await asyncio.sleep(1.0)
    return (f"{start:.0f} MB when the last session closed; "
            + (f"within 150 MB of {reference:.0f} MB after {back:.0f} s" if back is not None
               else f"not within 150 MB of {reference:.0f} MB in {limit_s:.0f} s")
            + (f"; {at_60:.0f} MB at 60 s" if at_60 is not None else ""))


async def cycles(browser, url: str, folders: list[list[str]], n: int, pid: int) -> list[float]:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    page.set_default_timeout(300_000)
    await page.goto(url)
    await page.wait_for_selector(IDLE)
    await asyncio.sleep(1.0)
    rss = [mem_mb(pid)]
    print(f"    before the first upload (the sample open): {rss[0]:.0f} MB", flush=True)
    for c in range(n):
        paths = folders[c % len(folders)]
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
        await page.get_by_text(f"{len(paths)} uploaded files: 1 series found").wait_for()
        await page.wait_for_selector(IDLE)
        await asyncio.sleep(1.0)
        rss.append(mem_mb(pid))
        if c in (0, n - 1) or (c + 1) % 5 == 0:
            print(f"    cycle {c + 1}: {rss[-1]:.0f} MB", flush=True)
    await ctx.close()
    return rss


class Sampler:
    """The server's resident memory every 50 ms, to see when the peak happens."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid, self.samples, self.stop = pid, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.perf_counter()
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples.append((time.perf_counter() - self.t0, mem_mb(self.pid)))
            except OSError:
                return

    def summary(self) -> str:
        self.stop.set()
        t, peak = max(self.samples, key=lambda s: s[1])
        marks = [self.samples[min(len(self.samples) - 1, int(len(self.samples) * q))] for q in (0.25, 0.5, 0.75)]
        return (f"peak RSS {peak:.0f} MB at {t:.1f} s of {self.samples[-1][0]:.1f} s; at 25/50/75% of the run: "
                + ", ".join(f"{m:.0f}" for _, m in marks) + " MB")


async def run(args) -> None:
    from playwright.async_api import async_playwright

    from benchmarks.bench_explorer import start
    from tests.browser import CHROMIUM_ARGS, chromium_path
    from tests.factory import write_ct_folder
    from tests.hostile import corpus

    with tempfile.TemporaryDirectory() as tmp:
        big = [str(p) for p in write_ct_folder(Path(tmp) / "big", slices=args.slices)]
        small = [[str(p) for p in write_ct_folder(Path(tmp) / f"small{i}", slices=120, seed=i)] for i in range(2)]
        hostile = []
        for n, (name, data, _) in enumerate(corpus()):
            p = Path(tmp) / "hostile" / f"{n:02d}_{name}"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(data)
            hostile.append(str(p))
        hostile += write_bombs(Path(tmp) / "bombs")
        proc, url = start(ROOT / "streamlit_app.py", [], dict(os.environ))
        try:
            base = mem_mb(proc.pid)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                print(f"{args.cycles} upload-and-replace cycles of 512x512x120 in one session (server at "
                      f"{base:.0f} MB):", flush=True)
                rss = await cycles(browser, url, small, args.cycles, proc.pid)
                print(f"  RSS before {rss[0]:.0f} MB, after the first cycle {rss[1]:.0f} MB, after the last "
                      f"{rss[-1]:.0f} MB, highest {max(rss):.0f} MB", flush=True)
                print(f"  {await after_sessions_end(proc.pid, rss[0])}", flush=True)
                results: list[dict] = []
                with open(f"/proc/{proc.pid}/clear_refs", "w") as fh:
                    fh.write("5")  # VmHWM from here: part 2's peak
                t = time.perf_counter()
                sampler = Sampler(proc.pid)
                _, _, straight = await asyncio.gather(
                    asyncio.gather(*[user_session(browser, url, big, results) for _ in range(args.sessions)]),
                    hostile_session(browser, url, hostile, results),
                    asyncio.to_thread(straight_uploads, url, 3, 290))
                wall = time.perf_counter() - t
                peak = mem_mb(proc.pid, "VmHWM")
                users = [r for r in results if not r.get("hostile")]
                failed = [r for r in results if not r["ok"]]
                firsts = sorted(r["first_image_s"] for r in users if "first_image_s" in r)
                uploads = sorted(r["upload_s"] for r in users if "upload_s" in r)
                p95 = firsts[min(len(firsts) - 1, int(round(0.95 * (len(firsts) - 1))))] if firsts else float("nan")
                print(f"{args.sessions} sessions each uploading 512x512x{args.slices} + 1 hostile session, "
                      f"all at once ({wall:.0f} s in all)")
                print(f"  failed sessions: {len(failed)} of {len(results)}"
                      + ("".join(f"\n    {r.get('error')}" for r in failed) if failed else ""))
                print(f"  time to first image: median {statistics.median(firsts):.1f} s, p95 {p95:.1f} s")
                if uploads:
                    print(f"  upload to series found: median {statistics.median(uploads):.1f} s, "
                          f"max {uploads[-1]:.1f} s")
                print(f"  attacker's 3 x 290 MB sent straight to the upload endpoint: HTTP {straight}")
                print(f"  server memory: peak {peak:.0f} MB (VmHWM); {sampler.summary()}")
                print(f"  every session closed: {await after_sessions_end(proc.pid, rss[0])}", flush=True)
                await browser.close()
        finally:
            proc.terminate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--cycles", type=int, default=20)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
