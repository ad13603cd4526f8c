"""Slider step to new image painted, in a real browser, on a 512x512x300 CT: the explorer vs a plain app.

Run:  python benchmarks/bench_explorer.py [--steps 20] [--rounds 3]

Four servers run side by side on loopback: the peer (benchmarks/peer_plain_viewer.py: one
st.image and a slider, Streamlit defaults), the floor (benchmarks/peer_fragment_floor.py: one
image in a fragment with postScriptGC off), the explorer page as configured
(.streamlit/config.toml), and the explorer with runner.postScriptGC turned back on. Headless
Chromium (Playwright) presses the arrow key on a focused slider and measures, in the page,
the time from the keydown to the new image decoded and painted (the task after its frame). Apps
alternate each round. The server-side time is the explorer fragment's own (shown on the page).
Memory: each server's resident set after the steps.
"""

from __future__ import annotations

import argparse
import os
import re
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


def step(page, slider_label: str, key: str) -> float:
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=slider_label).get_by_role("slider")
    thumb.focus()
    page.evaluate(INSTALL_JS, 0)
    page.keyboard.press(key)
    ms = page.evaluate("window.__lat")
    wait_idle(page)
    return ms


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

    from tests.conftest import CHROMIUM_ARGS, chromium_path
    from tests.factory import write_ct_folder

    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in write_ct_folder(Path(tmp) / "ct", slices=args.slices)]
        env = {**os.environ, "HOUNSFIELD_BENCH_FOLDER": str(Path(tmp) / "ct")}
        servers = {
            "plain st.image app (peer)": start(ROOT / "benchmarks" / "peer_plain_viewer.py", [], env),
            "floor: 1 image in a fragment, GC off": start(ROOT / "benchmarks" / "peer_fragment_floor.py",
                                                          ["--runner.postScriptGC", "false"], env),
            "explorer (as configured)": start(ROOT / "streamlit_app.py", [], env),
            "explorer, postScriptGC on": start(ROOT / "streamlit_app.py", ["--runner.postScriptGC", "true"], env),
        }
        results: dict[str, dict[str, list[float]]] = {name: {"slice": [], "window": [], "server": []} for name in servers}
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
                        page.get_by_text("Views drawn in").wait_for()
                    wait_idle(page)
                    pages[name] = page
                for _ in range(args.rounds):
                    for name, page in pages.items():
                        for kind, label, key in (("slice", "Axial slice", "ArrowRight"),
                                                 ("window", "Window center", "ArrowRight")):
                            for _ in range(args.steps):
                                ms = step(page, label, key)
                                if ms > 0:
                                    results[name][kind].append(ms)
                                if "explorer" in name:
                                    text = page.get_by_text(re.compile(r"Views drawn in [\d.]+ ms")).inner_text()
                                    results[name]["server"].append(float(re.search(r"([\d.]+) ms", text).group(1)))
                mem = {name: rss_mb(proc.pid) for name, (proc, _) in servers.items()}
                browser.close()
        finally:
            for proc, _ in servers.values():
                proc.terminate()

    print(f"512x512x{args.slices} CT, {args.rounds} rounds x {args.steps} steps per kind, apps alternating; "
          "key press to new image painted, in headless Chromium")
    print(f"{'app':<38}{'slice med':>10}{'p95':>7}{'window med':>11}{'p95':>7}{'server med':>11}{'RSS MB':>8}")
    for name, r in results.items():
        server = f"{statistics.median(r['server']):.1f}" if r["server"] else "-"
        print(f"{name:<38}{statistics.median(r['slice']):>10.1f}{pct(r['slice'], .95):>7.1f}"
              f"{statistics.median(r['window']):>11.1f}{pct(r['window'], .95):>7.1f}{server:>11}{mem[name]:>8.0f}")


if __name__ == "__main__":
    main()
