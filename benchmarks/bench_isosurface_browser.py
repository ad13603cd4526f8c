"""Click to surface visible in Chromium on the 3D page, side by side with the build time alone.

Run:  python benchmarks/bench_isosurface_browser.py [--runs 5] [--volume sample|ct|both]

For each volume a real ``streamlit run`` serves the app; headless Chromium (tests.browser's
arguments: no GPU, so WebGL runs on the CPU, as on most servers and CI machines) opens a new
session per run and times, from the mouse press to the first frame drawn with the new surface:

- ``arrive``: a click on "3D isosurface" in the sidebar (from the first page) to the default
  surface drawn; when the page asks for a click first ("Show the 3D surface"), that click is
  timed instead and the row says so;
- ``change``: choosing another surface (bone to skin) to it drawn.

"Drawn" is read in the page: for Plotly's chart, the mesh3d trace in the gl3d scene plus two
animation frames; for the app's own 3D view, its ``data-drawn`` attribute, set after the
frame that shows the new surface. ``build`` is the surface alone (``core.isosurface``, the page's
default settings, in this process). ``ct`` is the sample resampled to 512 x 512 x 300 with +-20 HU of
noise, made in memory by the server process (nothing is written to disk). Medians of --runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM_ARGS, chromium_path, streamlit_server, wait_idle  # noqa: E402

# Run by the server process before Streamlit starts: the "sample" becomes a 512 x 512 x 300 CT.
BIG_CT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(ROOT)!r})
    import numpy as np
    import core, core.sample
    from tests.factory import sample_at_full_size
    base = core.sample_ct()
    vox = sample_at_full_size(noise=20)
    vox.setflags(write=False)
    nz = vox.shape[0]
    positions = np.stack([np.full(nz, -179.0), np.full(nz, -179.0), np.arange(nz) * 1.0 - 150.0], axis=1)
    big = base.with_changes(voxels=vox, spacing=(1.0, 0.7, 0.7), positions=positions, padding=None,
                            slice_headers=None, source_names=tuple(f"ct/{{k}}.dcm" for k in range(nz)))
    core.sample_ct = core.sample.sample_ct = lambda: big
    from streamlit.web import cli
    sys.argv[0] = "streamlit"
    cli.main()
""")

# Defines token(): the surface drawn now (the app's own view: its data-drawn attribute, found in
# its shadow root; Plotly's chart: its mesh3d trace once the gl3d scene holds it), or null.
TOKEN = """
  const deep = (sel) => {
    const found = document.querySelector(sel);
    if (found) return found;
    for (const host of document.querySelectorAll('*')) {
      const hit = host.shadowRoot && host.shadowRoot.querySelector(sel);
      if (hit) return hit;
    }
    return null;
  };
  const token = () => {
    const own = deep('[data-drawn]');
    if (own) return own.getAttribute('data-drawn') || null;
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
      const trace = (gd._fullData || []).find((t) => t.type === 'mesh3d');
      const scene = gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene;
      if (!trace || !scene || !scene.glplot || !scene.glplot.objects.length) continue;
      if (!trace.__bench) trace.__bench = String(Math.random());
      return trace.__bench;
    }
    return null;
  };
"""

# Resolves with [token, performance.now()] at the first frame drawn with a surface other than ``before``.
DRAWN = "(before) => new Promise((resolve) => {" + TOKEN + """
  const poll = () => {
    const now = token();
    if (now !== null && now !== before) {
      // Plotly draws the scene on its next animation frame: wait for it, and one more. (The app's
      // view sets data-drawn one frame after drawing: this adds two frames more to its figures.)
      requestAnimationFrame(() => requestAnimationFrame(() => resolve([now, performance.now()])));
    } else {
      requestAnimationFrame(poll);
    }
  };
  poll();
})"""

CURRENT = "() => {" + TOKEN + "return token(); }"

PRESS = "document.addEventListener('pointerdown', () => { window.__pressed = performance.now(); }, true)"


def _wait_drawn(page, before: str | None) -> float:
    """Seconds from the last mouse press to the first frame drawn with a new surface."""
    _, t_drawn = page.evaluate(DRAWN, before)
    return (t_drawn - page.evaluate("window.__pressed")) / 1000.0


def one_run(browser, url: str) -> dict[str, float | str]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.add_init_script(PRESS)
    try:
        page.goto(url)
        wait_idle(page)
        page.get_by_role("link", name="3D isosurface").first.click()
        how = "arrive"
        before = None
        page.wait_for_function(
            "() => document.querySelector('.js-plotly-plot, .stBidiComponent') ||"
            " [...document.querySelectorAll('label')].some((e) => e.textContent.includes('Show the 3D surface'))")
        ask = page.locator("label").filter(has_text="Show the 3D surface")
        if not page.locator(".js-plotly-plot, .stBidiComponent").count() and ask.count():
            wait_idle(page)
            ask.first.click()
            how = "arrive (after a click)"
        arrive = _wait_drawn(page, before)
        wait_idle(page)
        before = page.evaluate(CURRENT)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Surface").first.click()
        page.get_by_role("option", name="Skin (-300 HU)").click()
        change = _wait_drawn(page, before)
        wait_idle(page)
        return {"how": how, "arrive": arrive, "change": change}
    finally:
        context.close()


def build_times(runs: int, big: bool) -> tuple[float, float]:
    """Median seconds to build the default (bone) and the skin surface, as the page asks for them."""
    import numpy as np

    from core import sample_ct
    from core.isosurface import extract_isosurface
    from dashboard.iso_ui import DEFAULT_TRIANGLES, SMOOTH_SIGMA
    from tests.factory import sample_at_full_size

    vol = sample_ct()
    if big:
        vox = sample_at_full_size(noise=20)
        nz = vox.shape[0]
        positions = np.stack([np.full(nz, -179.0), np.full(nz, -179.0), np.arange(nz) * 1.0 - 150.0], axis=1)
        vol = vol.with_changes(voxels=vox, spacing=(1.0, 0.7, 0.7), positions=positions, padding=None,
                               slice_headers=None, source_names=tuple(f"ct/{k}.dcm" for k in range(nz)))
    out = []
    for level in (400.0, -300.0):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            extract_isosurface(vol, level, max_triangles=DEFAULT_TRIANGLES, smooth=SMOOTH_SIGMA)
            times.append(time.perf_counter() - t)
        out.append(statistics.median(times))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--volume", choices=("sample", "ct", "both"), default="both")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    volumes = ("sample", "ct") if args.volume == "both" else (args.volume,)
    print(f"Chromium {', '.join(CHROMIUM_ARGS[:3])}; medians of {args.runs} runs (each a new session)")
    print(f"{'volume':<22}{'step':<28}{'browser s':>10}{'build s':>9}   runs")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        for name in volumes:
            big = name == "ct"
            label = "512x512x300 CT" if big else "sample 120x256x256"
            with streamlit_server(python_args=["-c", BIG_CT] if big else None) as (url, _):
                one_run(browser, url)  # warm up: imports, caches of the page's code
                rows = [one_run(browser, url) for _ in range(args.runs)]
            bone, skin = build_times(max(1, min(args.runs, 3)), big)
            for step, build in (("arrive", bone), ("change", skin)):
                values = [float(r[step]) for r in rows]
                what = str(rows[0]["how"]) if step == "arrive" else "change to skin"
                print(f"{label:<22}{what:<28}{statistics.median(values):>10.2f}{build:>9.2f}   "
                      + " ".join(f"{v:.2f}" for v in values))
        browser.close()


if __name__ == "__main__":
    main()
