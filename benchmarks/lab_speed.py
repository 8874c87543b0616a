"""The book's live lab in headless Chromium: how fast its JavaScript decodes, bounds and redraws, and what it loads.

    python benchmarks/lab_speed.py [--repeats 20] [--out benchmarks/results/lab_speed_cpu.json]

It builds the lab page from ``book/lab.md`` (its HTML lines) and the assets
that the book build makes (``book/_ext/vaelib_lab.py``), serves them on
127.0.0.1 and opens the page in the system Chromium (Selenium), as CI's
browser check does.  It times, with ``performance.now()`` inside the page
(median and maximum over ``--repeats``):

* one decode of the map's model (``mnist-2d-small``, 2 -> 128 -> 256 -> 784)
  and of the bounds' model (``burda-vae-k1``);
* one L_50 and one L_500 of one image under ``burda-vae-k1`` (encoder, draws,
  decoder and log-sum-exp: what a new drawing costs), and their pieces: one
  encode and one chunk of 25 log-weights decoded together, whose medians give L_k's cost on an idle machine
  when this one is busy (``from_pieces_ms``: a short piece mostly runs within
  one time slice, a long computation is interrupted by the other processes);
* one full redraw of each panel (the map, the drawing panel without its
  bounds, the CVAE's digits on demand);
* the page's time to interactive (navigation start to the live panels) and
  the bytes of every file it loads on a first visit (as the server saw them).

Targets (issue 15): decode <= 2 ms, L_50 <= 20 ms, every redraw < 16 ms (one
60 Hz frame), L_500 <= 200 ms, lab assets <= 3 MB.  The helpers here
(:func:`build_site`, :func:`serve`, :func:`chromium`) also serve
``tests/test_lab_browser.py``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from machine import describe  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
STATIC = REPO / "book" / "_static"
LAB_FILES = ("vae_lab.js", "vae_lab_page.js", "vae_lab.css")
CHROMIUM_FLAGS = (  # as .ci/check_book.py starts it: headless, no network of its own
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
TARGETS_MS = {"decode": 2.0, "L_50": 20.0, "L_500": 200.0, "redraw": 16.0}
TARGET_ASSET_BYTES = 3_000_000


def _lab_extension():
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        import vaelib_lab
    finally:
        sys.path.remove(str(REPO / "book" / "_ext"))
    return vaelib_lab


def page_html() -> str:
    """The lab page as a bare HTML file: the raw-HTML lines of book/lab.md (its panels, status line and script)."""
    body = "\n".join(line for line in (REPO / "book" / "lab.md").read_text().splitlines() if line.startswith("<"))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>lab</title>\n'
        '<link rel="icon" href="data:,"></head>\n'  # no favicon request
        f"<body>\n{body}\n</body></html>\n"
    )


def build_site(directory: Path, *, figures: bool = True) -> dict[str, int]:
    """Write the lab as the built book lays it out: book/lab.html and _static/ with the modules and the
    assets; returns the assets' sizes in bytes."""
    static = directory / "_static"
    static.mkdir(parents=True, exist_ok=True)
    for name in LAB_FILES:
        shutil.copy(STATIC / name, static / name)
    (directory / "book").mkdir(exist_ok=True)
    (directory / "book" / "lab.html").write_text(page_html())
    return _lab_extension().write_lab_assets(static / "lab", with_figures=figures)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        self.server.requests.append((self.path, int(code) if str(code).isdigit() else code))

    def log_message(self, format, *args):  # noqa: A002
        pass


@contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 in a thread; yields the server (``.url``, ``.requests`` as (path, status))."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def browsers() -> tuple[str | None, str | None]:
    """The system Chromium and ChromeDriver (Debian's chromium and chromium-driver), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@contextmanager
def chromium():
    """A headless Chromium driven by Selenium, logging the console and the network (DevTools performance log)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browsers()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="vaelib-lab-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(300)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_lab(driver, url: str) -> dict:
    """Open the lab page and wait until it is live and its first bounds are done; returns its timings."""
    driver.get(f"{url}/book/lab.html")
    return driver.execute_async_script(WAIT_LIVE)


# Resolves once window.vaeLab is live and the drawing panel has finished its first L_500.
WAIT_LIVE = r"""
const done = arguments[arguments.length - 1];
(async () => {
  while (!window.vaeLab) await new Promise((r) => setTimeout(r, 20));
  await window.vaeLab.ready;
  while (window.vaeLab.panels.draw.state.busy) await new Promise((r) => setTimeout(r, 20));
  return window.vaeLab.timings;
})().then(done, (e) => done({error: String(e)}));
"""

# Times the lab's pieces inside the page; arguments: the module's URL and the number of repeats.
TIME_JS = r"""
const [moduleUrl, repeats, done] = arguments;
(async () => {
  const lab = await import(moduleUrl);
  const live = window.vaeLab;
  const time = (f, n = repeats) => {
    const times = [];
    for (let r = 0; r < n; r++) {
      const t = performance.now();
      f(r);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return {median_ms: times[Math.floor(times.length / 2)], max_ms: times[times.length - 1]};
  };
  const {map, bounds} = live.models;
  const x = live.digits[0].x;
  const z2 = Float64Array.of(0.3, -0.7);
  const zb = new Float64Array(bounds.latentDim).fill(0.1);
  const eps = (n, r) => lab.drawEps(lab.makeRng(r + 1), n, bounds.latentDim);
  const q = bounds.encode(x);
  const draws = eps(1000, 0);
  const [m, b] = [map.manifest.name, bounds.manifest.name];
  const out = {
    [`decode ${m}`]: time(() => map.mean(map.decode(z2)), 10 * repeats),
    [`decode ${b}`]: time(() => bounds.mean(bounds.decode(zb)), 10 * repeats),
    // The pieces of L_k, each short enough to run between the other processes' time slices on a busy machine.
    [`encode ${b}`]: time(() => bounds.encode(x), 10 * repeats),
    // One chunk of 25 draws, decoded together, as L_k computes them.
    [`25 log-weights ${b}`]: time((r) => {
      lab.logWeights(bounds, x, q.mu, q.logvar, draws.slice((25 * r) % 975, (25 * r) % 975 + 25));
    }, 10 * repeats),
    [`L_50 ${b}`]: time((r) => lab.bounds(bounds, x, eps(50, r)).Lk(50)),
    [`L_500 ${b}`]: time((r) => lab.bounds(bounds, x, eps(500, r)).Lk(500)),
    "redraw map": time(() => live.panels.map.redraw()),
    "redraw draw (without its bounds)": time(() => live.panels.draw.redraw()),
    "redraw cvae": time(() => live.panels.cvae.redraw()),
  };
  return out;
})().then(done, (e) => done({error: String(e)}));
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timings per measurement (median and max)")
    parser.add_argument("--loads", type=int, default=5, help="page loads for the time to interactive")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "lab_speed_cpu.json"))
    args = parser.parse_args(argv)
    if None in browsers():
        print("needs chromium and chromedriver (apt-get install chromium chromium-driver)", file=sys.stderr)
        return 1
    load_before = os.getloadavg()  # the timings are only as good as the machine is quiet: record how busy it was
    with tempfile.TemporaryDirectory(prefix="vaelib-lab-") as tmp, serve(Path(tmp)) as server, chromium() as driver:
        sizes = build_site(Path(tmp))
        loads = [open_lab(driver, server.url)]  # a fresh profile: every file comes from the server
        served = {path: (Path(tmp) / path.lstrip("/")).stat().st_size for path, _ in server.requests}
        loads += [open_lab(driver, server.url) for _ in range(args.loads - 1)]
        timings = driver.execute_async_script(TIME_JS, f"{server.url}/_static/vae_lab.js", args.repeats)
        browser = driver.capabilities.get("browserVersion")
    if "error" in timings or any("error" in t for t in loads):
        print(f"the page failed: {timings} {loads}", file=sys.stderr)
        return 1
    interactive = sorted(t["interactiveMs"] for t in loads)
    b = _lab_extension().BOUNDS
    weights = {name: size for name, size in sizes.items() if not name.endswith(".png")}  # the PNGs are no-JS only
    result = {
        "machine": describe(threads=False),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "browser": f"Chromium {browser} (headless)",
        "date": time.strftime("%Y-%m-%d"),
        "repeats": args.repeats,
        "timings": timings,
        # What L_k costs from its pieces' medians: close to an idle machine's time when the machine is busy.
        "from_pieces_ms": {
            f"L_{k} {b}": timings[f"encode {b}"]["median_ms"] + k / 25 * timings[f"25 log-weights {b}"]["median_ms"]
            for k in (50, 500)
        },
        "time_to_interactive_ms": {"median": interactive[len(interactive) // 2], "max": interactive[-1]},
        "bytes_loaded_first_visit": {"total": sum(served.values()), "files": served},
        "lab_assets_bytes": weights,
        "lab_assets_total_bytes": sum(weights.values()),
        "targets_ms": TARGETS_MS,
        "target_asset_bytes": TARGET_ASSET_BYTES,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
