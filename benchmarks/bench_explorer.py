"""Slider step to new image painted, in a real browser, on a 512x512x300 CT: the explorer vs a plain app.

Run:  python benchmarks/bench_explorer.py [--steps 20] [--rounds 3]

Three servers run side by side on loopback: the peer (benchmarks/peer_plain_viewer.py: one
st.image and a slider, Streamlit defaults), the floor (benchmarks/peer_fragment_floor.py: one
image in a fragment with postScriptGC off: Streamlit's own round trip) and the explorer page as
configured. Headless Chromium (Playwright) presses the arrow key on a focused slider and
measures, in the page, the time from the keydown to the new image painted (the task after its
frame). Apps alternate each round.

The explorer's views window and paint in the browser from planes it already holds, so four
cases are measured there:
- slice step: one arrow press, then the page is left to settle (the next planes arrive);
- held key: presses 33 ms apart (a held arrow key), each timed to the paint of its slice;
- jump: the slider set far away, to a plane the browser does not hold (a server round trip);
- window step: one arrow press on the window center.
Memory: each server's resident set after the steps.

A second part runs on the built-in sample (256x256x120, the one series with an overlay source
today) in the explorer: the slice step without an overlay, the same step with the sample's tissue
labels shown (label planes blended into the picture), and pointer movement while dragging the
handle of a length measurement, timed from the pointermove to the redrawn measurement painted.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INSTALL_JS = """
(idx) => {
  window.__t0 = null;
  const imgs = () => document.querySelectorAll('[data-testid="stImage"] img');
  const old = imgs()[idx] ? imgs()[idx].src : null;
  document.addEventListener('keydown', () => { if (window.__t0 === null) window.__t0 = performance.now(); },
                            {capture: true, once: true});
  window.__lat = new Promise((resolve) => {
    const check = () => {
      const img = imgs()[idx];
      if (img && img.src !== old) {
        obs.disconnect();
        // rAF runs just before the frame is painted; a task queued from it runs just after.
        const done = () => requestAnimationFrame(() => setTimeout(
          () => resolve(performance.now() - window.__t0), 0));
        img.decode().then(done, done);
        return true;
      }
      return false;
    };
    const obs = new MutationObserver(check);
    obs.observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 10000);
  });
}
"""

# The explorer's canvases carry data-index (the plane shown) and data-painted (a paint counter).
FIND_JS = """
// The views live in the component's shadow root: look there too.
const hfFind = (sel) => {
  for (const host of document.querySelectorAll('*')) {
    const hit = host.shadowRoot && host.shadowRoot.querySelector(sel);
    if (hit) return hit;
  }
  return document.querySelector(sel);
};
"""

CANVAS_JS = """
([axis, expect]) => {
""" + FIND_JS + """
  const canvas = hfFind(`.hf-view[data-axis="${axis}"] canvas`);
  window.__t0 = null;
  const before = canvas.dataset.painted;
  document.addEventListener('keydown', () => { if (window.__t0 === null) window.__t0 = performance.now(); },
                            {capture: true, once: true});
  window.__lat = new Promise((resolve) => {
    const ok = () => canvas.dataset.painted !== before && (expect === null || canvas.dataset.index === String(expect));
    const obs = new MutationObserver(() => {
      if (!ok()) return;
      obs.disconnect();
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - window.__t0), 0));
    });
    obs.observe(canvas, {attributes: true});
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 10000);
  });
}
"""

# A jump: the axial slider set to a plane never shown before (no prefetch can have it).
JUMP_JS = """
async (target) => {
""" + FIND_JS + """
  const canvas = hfFind('.hf-view[data-axis="0"] canvas');
  const input = hfFind('.hf-view[data-axis="0"] input');
  return await new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (canvas.dataset.index !== String(target)) return;
      obs.disconnect();
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - t0), 0));
    });
    obs.observe(canvas, {attributes: true});
    const t0 = performance.now();
    input.value = String(target);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 10000);
  });
}
"""

# A held key: presses `gap` ms apart; each press timed to the paint of the slice it asks for.
HELD_JS = """
async ([n, gap]) => {
""" + FIND_JS + """
  const canvas = hfFind('.hf-view[data-axis="0"] canvas');
  const input = hfFind('.hf-view[data-axis="0"] input');
  const pressed = new Map();
  const out = [];
  const obs = new MutationObserver(() => {
    const t = pressed.get(canvas.dataset.index);
    if (t !== undefined) {
      pressed.delete(canvas.dataset.index);
      requestAnimationFrame(() => setTimeout(() => out.push(performance.now() - t), 0));
    }
  });
  obs.observe(canvas, {attributes: true});
  input.focus();
  for (let i = 0; i < n; i++) {
    const next = String(Number(input.value) + 1);
    pressed.set(next, performance.now());
    input.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
    input.value = next;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    await new Promise((r) => setTimeout(r, gap));
  }
  await new Promise((r) => setTimeout(r, 2000));
  obs.disconnect();
  return {times: out, missed: pressed.size};
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: Path, extra: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none", *extra],
        cwd=script.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{script.name} did not start")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_idle(page) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)


def settle(page) -> None:
    page.wait_for_timeout(300)  # the state update leaves the browser 150 ms after a change at most
    wait_idle(page)


def step(page, slider_label: str, key: str) -> float:
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=slider_label).get_by_role("slider")
    thumb.focus()
    page.evaluate(INSTALL_JS, 0)
    page.keyboard.press(key)
    ms = page.evaluate("window.__lat")
    wait_idle(page)
    return ms


def canvas_step(page, label: str, key: str, axis: int = 0, expect: int | None = None) -> float:
    page.get_by_role("slider", name=label).focus()
    page.evaluate(CANVAS_JS, [axis, expect])
    page.keyboard.press(key)
    ms = page.evaluate("window.__lat")
    settle(page)
    return ms


# Pointer movement while a measurement's handle is dragged: pointermove to the redrawn marks painted.
MOVE_JS = """
() => {
""" + FIND_JS + """
  const stage = hfFind('.hf-view[data-axis="0"] .hf-stage');
  window.__t0 = null;
  const before = stage.dataset.drawn;
  stage.addEventListener('pointermove', () => { if (window.__t0 === null) window.__t0 = performance.now(); },
                         {capture: true, once: true});
  window.__lat = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (stage.dataset.drawn === before) return;
      obs.disconnect();
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - window.__t0), 0));
    });
    obs.observe(stage, {attributes: true});
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 10000);
  });
}
"""


def overlay_case(page, steps: int) -> dict[str, list[float]]:
    """On the sample: slice steps without and with the tissue overlay, then a length's handle dragged."""
    out: dict[str, list[float]] = {"plain": [], "overlay": [], "move": []}
    out["plain"] = [canvas_step(page, "Axial slice", "ArrowRight") for _ in range(steps)]
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Segmentation overlay").click()
    page.get_by_role("option", name="Sample tissue labels").click()
    page.locator('.hf-view[data-axis="0"] canvas[data-overlay]:not([data-overlay=""])').wait_for()
    settle(page)
    page.get_by_role("slider", name="Axial slice").focus()
    page.keyboard.press("Home")
    settle(page)
    out["overlay"] = [canvas_step(page, "Axial slice", "ArrowRight") for _ in range(steps)]
    page.locator('button[data-tool="length"]').click()
    box = page.locator('.hf-view[data-axis="0"] .hf-stage').bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    x1, y1 = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    settle(page)
    page.mouse.move(x1, y1)
    page.mouse.down()  # on the length's end: its handle
    for k in range(steps):
        page.evaluate(MOVE_JS)
        page.mouse.move(x1 + 2 * (k + 1), y1 + (k % 3))
        out["move"].append(page.evaluate("window.__lat"))
    page.mouse.up()
    settle(page)
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20, help="slider steps per kind, per app, per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slices", type=int, default=300)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, chromium_path
    from tests.factory import write_ct_folder

    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in write_ct_folder(Path(tmp) / "ct", slices=args.slices)]
        env = {**os.environ, "HOUNSFIELD_BENCH_FOLDER": str(Path(tmp) / "ct")}
        servers = {
            "plain st.image app (peer)": start(ROOT / "benchmarks" / "peer_plain_viewer.py", [], env),
            "floor: 1 image in a fragment, GC off": start(ROOT / "benchmarks" / "peer_fragment_floor.py",
                                                          ["--runner.postScriptGC", "false"], env),
            "explorer (as configured)": start(ROOT / "streamlit_app.py", [], env),
        }
        kinds = ("slice", "held", "jump", "window")
        results: dict[str, dict[str, list[float]]] = {name: {k: [] for k in kinds} for name in servers}
        missed = 0
        # Jump targets 20 planes apart (more than the prefetch reaches), where neither the steps
        # (the middle and up, then 0 and up) nor an earlier jump have been.
        n = args.slices
        jumps = [n * 7 // 30 + 20 * i for i in range(4)] + [n * 43 // 60 + 20 * i for i in range(5)]
        assert args.rounds <= 3 and jumps[-1] < n, "the jump targets fit 3 rounds of a 300-slice series"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                pages = {}
                for name, (_, url) in servers.items():
                    page = browser.new_page(viewport={"width": 1600, "height": 1100})
                    page.set_default_timeout(120_000)
                    page.goto(url)
                    wait_idle(page)
                    if "explorer" in name:
                        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(paths)
                        page.get_by_text(f"{len(paths)} uploaded files: 1 series found").wait_for(timeout=300_000)
                        page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Volume explorer").click()
                        page.get_by_text("At the crosshair:").wait_for()
                        page.locator('.hf-view[data-axis="0"] canvas[data-painted]').wait_for()
                    settle(page)
                    pages[name] = page
                for _ in range(args.rounds):
                    for name, page in pages.items():
                        r = results[name]
                        if "explorer" not in name:
                            for kind, label in (("slice", "Axial slice"), ("window", "Window center")):
                                times = (step(page, label, "ArrowRight") for _ in range(args.steps))
                                r[kind] += [ms for ms in times if ms > 0]
                            continue
                        for _ in range(args.steps):
                            r["slice"].append(canvas_step(page, "Axial slice", "ArrowRight"))
                        held = page.evaluate(HELD_JS, [args.steps, 33])
                        r["held"] += held["times"]
                        missed += held["missed"]
                        settle(page)
                        for _ in range(3):
                            r["jump"].append(page.evaluate(JUMP_JS, jumps.pop()))
                            settle(page)
                        for _ in range(args.steps):
                            r["window"].append(canvas_step(page, "Window center (HU)", "ArrowRight"))
                        page.get_by_role("slider", name="Axial slice").focus()
                        page.keyboard.press("Home")  # back to the start: the next round scrolls anew
                        settle(page)
                mem = {name: rss_mb(proc.pid) for name, (proc, _) in servers.items()}
                sample = browser.new_page(viewport={"width": 1600, "height": 1100})
                sample.set_default_timeout(120_000)
                sample.goto(servers["explorer (as configured)"][1] + "/Volume_explorer")
                sample.locator('.hf-view[data-axis="0"] canvas[data-painted]').wait_for()
                settle(sample)
                overlay = overlay_case(sample, args.steps * args.rounds)
                browser.close()
        finally:
            for proc, _ in servers.values():
                proc.terminate()

    def cell(values: list[float], q: float | None = None) -> str:
        values = [v for v in values if v > 0]
        if not values:
            return "-"
        return f"{(statistics.median(values) if q is None else pct(values, q)):.1f}"

    print(f"512x512x{args.slices} CT, {args.rounds} rounds x {args.steps} steps per kind, apps alternating; "
          "key press to new image painted, in headless Chromium (ms)")
    print(f"{'app':<38}{'slice med':>10}{'p95':>7}{'held med':>9}{'p95':>7}{'jump med':>9}"
          f"{'window med':>11}{'p95':>7}{'RSS MB':>8}")
    for name, r in results.items():
        print(f"{name:<38}{cell(r['slice']):>10}{cell(r['slice'], .95):>7}{cell(r['held']):>9}{cell(r['held'], .95):>7}"
              f"{cell(r['jump']):>9}{cell(r['window']):>11}{cell(r['window'], .95):>7}{mem[name]:>8.0f}")
    print(f"held key: {missed} presses never painted their own slice (skipped by a later one)")
    print("\nBuilt-in sample (256x256x120) in the explorer (ms, median and p95):")
    for label, key in (("slice step, no overlay", "plain"), ("slice step, tissue overlay at 0.4", "overlay"),
                       ("pointer move to redrawn length", "move")):
        print(f"  {label:<36}{cell(overlay[key]):>8}{cell(overlay[key], .95):>8}")


if __name__ == "__main__":
    main()
