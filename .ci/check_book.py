#!/usr/bin/env python3
"""Check the built Jupyter Book in a real (headless) browser.

Run it after the strict build has produced the HTML:

    jupyter-book build . -W -n --keep-going
    python .ci/check_book.py            # defaults to --html _build/html

What it does, in order:

1. Static checks on the HTML files: every page of ``_toc.yml`` was built, each
   chapter page (``book/NN_*``) holds at least one figure image and some math
   markup, and the references page lists every entry of the ``.bib`` file(s)
   named in ``_config.yml``.  Each chapter page also has the download button's
   ``.ipynb`` link (to a file present in the build) and a Colab launch link to
   ``https://colab.research.google.com/github/<owner>/<repo>/blob/<branch>/<path>.ipynb``
   for the repository named in ``_config.yml`` (``repository.url``).
2. MathJax 3 is fetched from the npm registry (``npm pack mathjax@3``) into a
   temporary directory, copied to ``<html>/_static/mathjax/`` and every MathJax
   ``<script src=...>`` that points at a CDN is rewritten to that local copy.
   This modifies the build output in place; the sources are untouched.
3. The HTML is served on 127.0.0.1 and every page of the table of contents is
   opened in headless Chromium (Selenium + chromedriver). After MathJax has
   typeset the page the script asserts that math was rendered, that no raw TeX
   is visible outside code blocks, that every image loaded and that the local
   server answered no request with an error. A full-page screenshot of each
   page is written to ``--screenshots`` (outside the repository by default).

Needs: Python packages PyYAML and selenium (run with the project venv: if they
cannot be imported and ``.venv/bin/python`` exists, the script re-runs itself
with it), the ``npm`` client, and Debian's ``chromium`` and ``chromium-driver``.

Exit status is 0 when everything passed and 1 otherwise; each failure is
printed on a line starting with ``FAIL``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html as htmllib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _ensure_dependencies() -> None:
    """Re-run under the project venv when selenium or PyYAML is missing."""
    try:
        import selenium  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        venv_python = REPO_ROOT / ".venv" / "bin" / "python"
        already = os.environ.get("CHECK_BOOK_REEXEC") == "1"
        if venv_python.exists() and not already:
            os.environ["CHECK_BOOK_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        sys.exit(
            f"FAIL missing Python package ({exc.name}); install it with "
            "`pip install selenium pyyaml` in the environment running this script"
        )


_ensure_dependencies()

import yaml  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

CHAPTER_RE = re.compile(r"(^|/)\d\d_[^/]*$")
CDN_MATHJAX_RE = re.compile(
    r"""(<script\b[^>]*?\bsrc=)(["'])((?:https?:)?//[^"']*mathjax[^"']*?/([\w.-]+\.js)(?:\?[^"']*)?)\2""",
    re.IGNORECASE,
)
LOCAL_MATHJAX_DIR = "_static/mathjax"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
# Visible text that means TeX (or a MyST role) was not rendered.
RAW_TEX_PATTERNS = [
    (re.compile(r"\$\$"), "'$$' display-math delimiter"),
    (re.compile(r"\\(?:begin|end)\{"), "\\begin{ / \\end{ environment"),
    (re.compile(r"\\[()\[\]]"), "\\( \\) \\[ \\] math delimiter"),
    (re.compile(r"\\[A-Za-z]{2,}"), "TeX control sequence"),
    (re.compile(r"\$[^$\n]*[\\^_][^$\n]*\$"), "inline $...$ math"),
    (re.compile(r"\{(?:cite|eq|ref|numref|doc|math)(?::[a-z]+)?\}`"), "unrendered MyST role"),
]


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def ok(self, msg: str) -> None:
        print(f"ok   {msg}", flush=True)

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        print(f"FAIL {msg}", flush=True)

    def info(self, msg: str) -> None:
        print(f"     {msg}", flush=True)


# --------------------------------------------------------------------------
# Reading the book configuration
# --------------------------------------------------------------------------


def toc_files(toc_path: Path) -> list[str]:
    """All ``file`` entries of a jb-book/jb-article ``_toc.yml``, in order."""
    data = yaml.safe_load(toc_path.read_text(encoding="utf8"))
    files = [data["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in data.items() if k in ("parts", "chapters", "sections")})
    # Strip any extension so the names match Sphinx docnames.
    return [re.sub(r"\.(md|ipynb|rst)$", "", f) for f in files]


def bib_entries(root: Path) -> list[tuple[str, str]]:
    """(key, first author's surname) for every entry of the configured .bib files."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf8")) or {}
    bibfiles = config.get("bibtex_bibfiles") or []
    if isinstance(bibfiles, str):
        bibfiles = [bibfiles]
    entries = []
    for rel in bibfiles:
        text = (root / rel).read_text(encoding="utf8")
        for chunk in re.split(r"\n(?=@)", "\n" + text):
            head = re.match(r"\s*@(\w+)\s*\{\s*([^,\s]+)\s*,", chunk)
            if not head or head.group(1).lower() in ("comment", "string", "preamble"):
                continue
            author = re.search(r"\bauthor\s*=\s*[{\"](.*?)[}\"]\s*,?\s*\n", chunk, re.S)
            surname = ""
            if author:
                first = re.split(r"\s+and\s+", author.group(1).strip())[0]
                first = first.replace("{", "").replace("}", "")
                surname = first.split(",")[0].strip() if "," in first else first.split()[-1]
            entries.append((head.group(2), surname))
    return entries


def colab_url(root: Path, doc: str) -> str:
    """The Colab launch URL of chapter ``doc``, from ``repository`` in ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf8")) or {}
    repo = config.get("repository") or {}
    url = str(repo.get("url", "")).rstrip("/")
    path = re.sub(r"^https?://github\.com/", "", url)
    if not url or path == url:
        raise ValueError(f"_config.yml: repository.url {url!r} is not a https://github.com/<owner>/<repo> URL")
    book = str(repo.get("path_to_book") or "").strip("/")
    return (
        f"https://colab.research.google.com/github/{path}/blob/{repo.get('branch') or 'main'}/"
        f"{book + '/' if book else ''}{doc}.ipynb"
    )


# --------------------------------------------------------------------------
# 1. Static checks
# --------------------------------------------------------------------------


def static_checks(html_dir: Path, pages: list[str], root: Path, rep: Report) -> dict[str, dict]:
    info: dict[str, dict] = {}
    if (html_dir / "index.html").is_file():
        rep.ok("index.html")
    else:
        rep.fail("index.html is missing from the build")

    for doc in pages:
        path = html_dir / f"{doc}.html"
        if not path.is_file():
            rep.fail(f"{doc}.html: page listed in _toc.yml was not built")
            continue
        text = path.read_text(encoding="utf8")
        srcs = re.findall(r"<img\b[^>]*?\bsrc=[\"']([^\"']+)[\"']", text)
        figures = [
            s for s in srcs if "_static/" not in s and re.search(r"(\.(png|svg)$)|^data:image/(png|svg)", s, re.I)
        ]
        has_math = bool(re.search(r"math notranslate|\\\(|\\\[", text))
        info[doc] = {"has_math": has_math, "figures": len(figures)}
        size_kb = path.stat().st_size / 1024
        problems = []
        if CHAPTER_RE.search(doc):
            if not figures:
                problems.append("no figure (<img> with a PNG/SVG outside _static/)")
            if not has_math:
                problems.append("no math markup")
        if problems:
            rep.fail(f"{doc}.html: " + "; ".join(problems))
        else:
            rep.ok(f"{doc}.html ({size_kb:.0f} KiB, {len(figures)} figure(s), math: {'yes' if has_math else 'no'})")

    # Every chapter page: the .ipynb download and the Colab launch button.
    try:
        repository_ok = bool(colab_url(root, ""))
    except ValueError as exc:
        rep.fail(str(exc))
        repository_ok = False
    for doc in pages:
        path = html_dir / f"{doc}.html"
        if not (repository_ok and CHAPTER_RE.search(doc) and path.is_file()):
            continue
        links = [
            htmllib.unescape(h)
            for h in re.findall(r"<a\b[^>]*?\bhref=[\"']([^\"']+)[\"']", path.read_text(encoding="utf8"))
        ]
        name = Path(doc).name
        downloads = [h for h in links if h.split("/")[-1] == f"{name}.ipynb" and not h.startswith(("http:", "https:"))]
        expected = colab_url(root, doc)
        problems = []
        if not downloads:
            problems.append(f"no download link to {name}.ipynb")
        elif not (path.parent / downloads[0]).resolve().is_file():
            problems.append(f"the download link {downloads[0]} points at a file missing from the build")
        if expected not in links:
            colab = [h for h in links if "colab.research.google.com" in h]
            problems.append(f"no Colab launch link {expected} (found: {colab or 'none'})")
        if problems:
            rep.fail(f"{doc}.html: " + "; ".join(problems))
        else:
            rep.ok(f"{doc}.html: .ipynb download and Colab launch ({expected})")

    # The references page is the toc entry that holds the {bibliography}.
    refs = [
        d
        for d in pages
        if (html_dir / f"{d}.html").is_file()
        and "doc-biblioentry" in (html_dir / f"{d}.html").read_text(encoding="utf8")
    ]
    entries = bib_entries(root)
    if not entries:
        rep.info("no bibtex_bibfiles configured; skipping the bibliography check")
    elif not refs:
        rep.fail("no page of the book contains a bibliography (role=doc-biblioentry)")
    else:
        page = refs[-1]
        text = (html_dir / f"{page}.html").read_text(encoding="utf8")
        n_html = text.count('role="doc-biblioentry"')
        plain = htmllib.unescape(re.sub(r"<[^>]+>", " ", text))
        plain = re.sub(r"\s+", " ", plain.replace("\xa0", " "))  # "van&nbsp;den Oord" is "van den Oord"
        missing = [k for k, surname in entries if surname and surname not in plain]
        if n_html < len(entries) or missing:
            rep.fail(
                f"{page}.html: {n_html} bibliography entries rendered, "
                f"{len(entries)} in the .bib file(s); missing: {missing or '?'}"
            )
        else:
            rep.ok(f"{page}.html lists all {len(entries)} bibliography entries")
    return info


# --------------------------------------------------------------------------
# 2. Local MathJax
# --------------------------------------------------------------------------


def fetch_mathjax(spec: str, workdir: Path, components: set[str]) -> Path:
    """``npm pack`` MathJax and extract what the given components need.

    Returns the directory that plays the role of MathJax's ``es5/`` folder:
    the requested component files plus the sub-folders they load lazily
    (CHTML/SVG fonts, TeX extensions such as ``\\boldsymbol``, the menu and
    accessibility parts). The large speech-rule data (``sre/``) is skipped.
    """
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError("the `npm` client is needed to fetch MathJax (apt-get install npm)")
    proc = subprocess.run(
        [npm, "pack", spec, "--silent", "--pack-destination", str(workdir)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        raise RuntimeError(f"`npm pack {spec}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    out = workdir / "mathjax"
    prefix = "package/es5/"
    with tarfile.open(tarballs[0]) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix) or ".." in member.name:
                continue
            rel = member.name[len(prefix) :]
            if "/" not in rel and rel not in components:
                continue  # another combined component, not used by the pages
            if rel.startswith("sre/"):
                continue
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return out


def localize_mathjax(html_dir: Path, spec: str, mathjax_src: Path | None, rep: Report) -> None:
    html_files = [p for p in html_dir.rglob("*.html") if "_static" not in p.parts]
    components: set[str] = set()
    pending: dict[Path, str] = {}
    already_local = 0
    for path in html_files:
        text = path.read_text(encoding="utf8")
        found = CDN_MATHJAX_RE.findall(text)
        if found:
            pending[path] = text
            components.update(m[3] for m in found)
        elif f"{LOCAL_MATHJAX_DIR}/" in text:
            already_local += 1
    if not pending and not already_local:
        rep.fail("no MathJax <script> tag found in the built HTML")
        return

    target = html_dir / LOCAL_MATHJAX_DIR
    if pending:
        with tempfile.TemporaryDirectory(prefix="mathjax-") as tmp:
            try:
                src = mathjax_src or fetch_mathjax(spec, Path(tmp), components)
            except (RuntimeError, subprocess.TimeoutExpired, tarfile.TarError) as exc:
                rep.fail(f"could not obtain MathJax: {exc}")
                return
            for comp in components:
                if not (src / comp).is_file():
                    rep.fail(f"MathJax component {comp} not found in {src}")
                    return
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target)
        for path, text in pending.items():

            def repl(m: re.Match, path=path) -> str:
                rel = os.path.relpath(target / m.group(4), path.parent).replace(os.sep, "/")
                return f"{m.group(1)}{m.group(2)}{rel}{m.group(2)}"

            path.write_text(CDN_MATHJAX_RE.sub(repl, text), encoding="utf8")
    rep.ok(
        f"MathJax served locally from {LOCAL_MATHJAX_DIR}/ "
        f"({len(pending)} page(s) rewritten, {already_local} already local)"
    )


# --------------------------------------------------------------------------
# 3. Browser checks
# --------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    errors: list[tuple[str, int]] = []

    def log_request(self, code="-", size="-"):  # noqa: D401 - silence, but record errors
        try:
            status = int(code)
        except (TypeError, ValueError):
            return
        if status >= 400 and not self.path.endswith("favicon.ico"):
            _Handler.errors.append((self.path, status))

    def log_message(self, format, *args):  # noqa: A002
        pass


def start_server(html_dir: Path):
    handler = functools.partial(_Handler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def make_driver(chromium: str, chromedriver: str, profile: str):
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(180)
    return driver


# Waits for MathJax's first typeset, web fonts and every image; returns a summary.
WAIT_JS = r"""
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 120000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const out = {mathjax: "absent", version: null, script: null};
  const tag = document.querySelector('script[src*="tex-"][src$=".js"], script[src*="mathjax" i]');
  if (tag) {
    out.script = tag.src;
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
      if (Date.now() > deadline) { out.mathjax = "did not load"; break; }
      await sleep(100);
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; out.mathjax = "typeset"; out.version = MathJax.version; }
      catch (e) { out.mathjax = "error: " + e; }
    }
  }
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { img.loading = "eager"; });
  await Promise.all(imgs.map((img) => img.complete ? null : new Promise((r) => {
    img.addEventListener("load", r, {once: true});
    img.addEventListener("error", r, {once: true});
    setTimeout(r, Math.max(0, deadline - Date.now()));
  })));
  if (document.fonts && document.fonts.ready) { await document.fonts.ready; }
  await sleep(200);
  return out;
})().then(done, (e) => done({mathjax: "error: " + e}));
"""

# Counts rendered math, lists images, and reads the visible text without code.
INSPECT_JS = r"""
const style = document.createElement("style");
style.textContent = "pre, code, kbd, samp, .highlight, div.cell_input { display: none !important; }";
document.head.appendChild(style);
const text = document.body.innerText;
style.remove();
return {
  mjx: document.querySelectorAll("mjx-container").length,
  merror: Array.from(document.querySelectorAll("mjx-merror, [data-mjx-error]"))
      .map((e) => e.getAttribute("data-mjx-error") || e.textContent).slice(0, 5),
  images: Array.from(document.images).map((img) => ({
      src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth})),
  scrolling: Array.from(document.querySelectorAll("div.cell_input div.highlight pre"))
      .filter((e) => e.scrollWidth > e.clientWidth + 1)
      .map((e) => e.textContent.split("\n").reduce((a, l) => (l.length > a.length ? l : a), "").slice(0, 60)),
  text: text,
};
"""


def full_page_screenshot(driver, path: Path, width: int = 1280) -> None:
    """Grow the viewport to the page height, capture it, then restore."""
    height = 0
    for _ in range(3):  # the layout can change once the viewport is taller
        new = int(
            driver.execute_script("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
        )
        new = max(1, min(new, 16000))
        if new == height:
            break
        height = new
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        time.sleep(0.3)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def raw_tex_hits(text: str) -> list[str]:
    hits = []
    for pattern, label in RAW_TEX_PATTERNS:
        for m in list(pattern.finditer(text))[:3]:
            ctx = " ".join(text[max(0, m.start() - 30) : m.end() + 30].split())
            hits.append(f"{label}: ...{ctx}...")
    return hits


def browser_checks(
    html_dir: Path, pages: list[str], static: dict, shots: Path, chromium: str, chromedriver: str, rep: Report
) -> None:
    for exe, what in ((chromium, "chromium"), (chromedriver, "chromedriver")):
        if not (exe and Path(exe).is_file()):
            rep.fail(f"{what} not found ({exe!r}); apt-get install chromium chromium-driver")
            return
    shots.mkdir(parents=True, exist_ok=True)
    server = start_server(html_dir)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rep.info(f"serving {html_dir} at {base}")
    profile = tempfile.mkdtemp(prefix="check-book-chromium-")
    driver = None
    console_seen: set[str] = set()
    try:
        try:
            driver = make_driver(chromium, chromedriver, profile)
        except WebDriverException as exc:
            rep.fail(f"could not start headless Chromium: {exc.msg or exc}")
            return
        for doc in pages:
            if doc not in static:
                continue  # already reported missing
            _Handler.errors.clear()
            url = f"{base}/{doc}.html"
            t0 = time.monotonic()
            try:
                driver.get(url)
                waited = driver.execute_async_script(WAIT_JS)
                page = driver.execute_script(INSPECT_JS)
            except WebDriverException as exc:
                rep.fail(f"{doc}: browser error: {exc.msg or exc}")
                continue
            problems = []
            needs_math = static[doc]["has_math"]
            if needs_math:
                if waited.get("mathjax") != "typeset":
                    problems.append(f"MathJax {waited.get('mathjax')} (script: {waited.get('script')})")
                elif not (waited.get("script") or "").startswith(base):
                    problems.append(f"MathJax was not loaded from the local copy: {waited.get('script')}")
                if page["mjx"] == 0:
                    problems.append("no rendered math (0 mjx-container elements)")
            if page["merror"]:
                problems.append(f"MathJax errors: {page['merror']}")
            for hit in raw_tex_hits(page["text"]):
                problems.append(f"raw TeX visible: {hit}")
            if page["scrolling"]:  # code cells must fit the column at 1280 pixels (book/_static/vaelib.css)
                problems.append(f"{len(page['scrolling'])} code cell(s) scroll sideways: {page['scrolling'][:3]}")
            broken = [i["src"] for i in page["images"] if not (i["complete"] and i["width"] > 0)]
            if broken:
                problems.append(f"{len(broken)} image(s) did not load: {broken[:5]}")
            if _Handler.errors:
                problems.append(f"server answered errors: {_Handler.errors[:5]}")
            for entry in driver.get_log("browser"):
                msg = entry.get("message", "").replace(base, "")
                key = re.sub(r"^\S+ \d+:\d+ ", "", msg)  # drop the "URL line:col" prefix
                if entry.get("level") != "SEVERE" or "favicon.ico" in msg or key in console_seen:
                    continue
                console_seen.add(key)
                rep.info(f"{doc}: browser console (not a failure): {msg[:200]}")
            shot = shots / (doc.replace("/", "__") + ".png")
            try:
                full_page_screenshot(driver, shot)
            except WebDriverException as exc:
                problems.append(f"screenshot failed: {exc.msg or exc}")
            elapsed = time.monotonic() - t0
            if problems:
                for p in problems:
                    rep.fail(f"{doc} (browser): {p}")
            else:
                rep.ok(
                    f"{doc} (browser, {elapsed:.1f} s): {page['mjx']} math element(s), "
                    f"{len(page['images'])} image(s) loaded, MathJax {waited.get('version')}"
                )
            if shot.exists():
                rep.info(f"screenshot: {shot}")
    finally:
        if driver is not None:
            driver.quit()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", default="_build/html", help="built HTML directory (default: %(default)s)")
    parser.add_argument(
        "--root",
        default=None,
        help="book source directory holding _toc.yml and _config.yml "
        "(default: two levels above --html if it has a _toc.yml, else the repository root)",
    )
    parser.add_argument(
        "--screenshots",
        default="/tmp/vaelib-book-screenshots",
        help="directory for full-page PNG screenshots (default: %(default)s)",
    )
    parser.add_argument("--mathjax-spec", default="mathjax@3", help="npm package to fetch (default: %(default)s)")
    parser.add_argument(
        "--mathjax-dir", default=None, help="use this already extracted MathJax es5/ directory instead of npm"
    )
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = parser.parse_args(argv)

    start = time.monotonic()
    rep = Report()
    html_dir = Path(args.html).resolve()
    if not html_dir.is_dir():
        print(
            f"FAIL HTML directory {html_dir} does not exist; build the book first "
            "(jupyter-book build . -W -n --keep-going)"
        )
        return 1
    if args.root:
        root = Path(args.root).resolve()
    elif (html_dir.parent.parent / "_toc.yml").is_file():
        root = html_dir.parent.parent
    else:
        root = REPO_ROOT
    pages = toc_files(root / "_toc.yml")
    print(f"checking {html_dir} against {root / '_toc.yml'} ({len(pages)} pages)")

    static = static_checks(html_dir, pages, root, rep)
    localize_mathjax(html_dir, args.mathjax_spec, Path(args.mathjax_dir).resolve() if args.mathjax_dir else None, rep)
    if not any("MathJax" in f for f in rep.failures):
        browser_checks(html_dir, pages, static, Path(args.screenshots).resolve(), args.chromium, args.chromedriver, rep)

    elapsed = time.monotonic() - start
    if rep.failures:
        print(f"\nbook check FAILED in {elapsed:.1f} s: {len(rep.failures)} problem(s)")
        return 1
    print(f"\nbook check passed in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
