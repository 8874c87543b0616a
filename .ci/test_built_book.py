"""The built book in headless Chromium: what only a browser can check.

Run after the book build, by ``bash .ci/check_book`` (which adds pytest-check-links
over the same HTML, so that every internal link and image points at a file of the
build)::

    VAELIB_BOOK_HTML=_build/html VAELIB_SCREENSHOTS=/tmp/vaelib-book-screenshots \\
        pytest -p no:cacheprovider .ci/test_built_book.py

It lives in ``.ci/`` so that ``pytest tests`` never collects it before the book
exists. The HTML is served on 127.0.0.1 and every page of ``_toc.yml`` is opened
in a 1280-pixel window, with no network: MathJax comes from the build itself
(``book/_ext/packaged_mathjax.py`` sets Sphinx's ``mathjax_path``). Each page
must show typeset math and no raw TeX, load every image, scroll sideways
nowhere (neither code cells nor printed outputs: ``book/_static/vaelib.css``
wraps them), and be screenshotted whole into ``VAELIB_SCREENSHOTS``; a page made
from a notebook must offer its ``.ipynb`` and a Colab launch link; the
references page must list every ``.bib`` entry as pybtex formats it.
"""

from __future__ import annotations

import base64
import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml
from pybtex.database import parse_file
from pybtex.plugin import find_plugin
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("VAELIB_BOOK_HTML") or REPO / "_build" / "html").resolve()
SHOTS = Path(os.environ.get("VAELIB_SCREENSHOTS") or "/tmp/vaelib-book-screenshots").resolve()
# The sources the HTML was built from: <book>/_build/html, else this repository.
SOURCE = HTML.parents[1] if (HTML.parents[1] / "_toc.yml").is_file() else REPO
CONFIG = yaml.safe_load((SOURCE / "_config.yml").read_text(encoding="utf8"))
PAGES = list(parse_toc_yaml(SOURCE / "_toc.yml"))  # Sphinx docnames, e.g. "book/05_mnist"
SOURCES = {doc: next(SOURCE.glob(f"{doc}.*")) for doc in PAGES}  # book/05_mnist -> .../book/05_mnist.ipynb
NOTEBOOKS = [doc for doc in PAGES if SOURCES[doc].suffix == ".ipynb"]
WIDTH = 1280  # pixels: the window every page must fit
# Visible text (code hidden) that means TeX or a MyST role was left unrendered.
RAW_TEX = re.compile(
    r"\$\$|\\(?:begin|end)\{|\\[()\[\]]|\\[A-Za-z]{2,}|\$[^$\n]*[\\^_][^$\n]*\$"
    r"|\{(?:cite|eq|ref|numref|doc|math|glue)(?::[a-z]+)?\}`"
)

# Waits for MathJax's typesetting, every image and the fonts, then reads the page.
INSPECT_JS = r"""
const done = arguments[arguments.length - 1];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const deadline = Date.now() + 30000;  // MathJax from the build loads in a second or two
  const tag = document.querySelector('script[src*="mathjax" i]');
  while (tag && !(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < deadline) {
    await sleep(100);
  }
  let mathjax = tag ? "did not load in 30 s" : "absent";
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; mathjax = "typeset"; } catch (e) { mathjax = "error: " + e; }
  }
  const images = Array.from(document.images);
  images.forEach((i) => { i.loading = "eager"; });
  await Promise.all(images.map((i) => i.complete ? null : new Promise((r) => {
    i.addEventListener("load", r); i.addEventListener("error", r); setTimeout(r, 30000);
  })));
  await document.fonts.ready;
  // A page that computes once loaded (book/lab.md) marks what is still computing aria-busy="true".
  const settled = Date.now() + 60000;
  while (document.querySelector('[aria-busy="true"]') && Date.now() < settled) await sleep(100);
  await sleep(200);
  const longest = (e) => e.textContent.split("\n").reduce((a, l) => (l.length > a.length ? l : a), "");
  // What scrolls sideways: a scrolling box (overflow-x auto or scroll) whose content is wider than it.
  const scrolls = (e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX)
      && e.scrollWidth > e.clientWidth + 1;
  const wider = (selector) => [...new Set(Array.from(document.querySelectorAll(selector))
      .filter(scrolls).map((e) => longest(e).trim().slice(0, 90)))];
  const hide = document.createElement("style");
  hide.textContent = "pre, code, kbd, samp, .highlight, div.cell_input { display: none !important; }";
  document.head.appendChild(hide);
  const text = document.body.innerText;
  hide.remove();
  const math = Array.from(document.querySelectorAll(".math"));
  return {
    mathjax, script: tag && tag.src, math: math.length,
    untypeset: math.filter((e) => !e.querySelector("mjx-container")).map((e) => e.textContent.slice(0, 80)),
    merror: Array.from(document.querySelectorAll("mjx-merror")).map((e) => e.getAttribute("data-mjx-error")),
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.currentSrc || i.src),
    code: wider("div.cell_input pre"),
    outputs: wider("div.cell_output, div.cell_output *"),
    // Display math and the code blocks of the prose: everything else in the article that scrolls.
    prose: wider("article *:not(div.cell_input *):not(div.cell_input):not(div.cell_output *):not(div.cell_output)"),
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    links: Array.from(document.links).map((a) => a.getAttribute("href")),
    bibliography: Array.from(document.querySelectorAll('[role="doc-biblioentry"] p')).map((e) => e.innerText),
    text,
  };
})().then(done, (e) => done({error: String(e)}));
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the build and records every request it answered with an error."""

    def log_request(self, code="-", size="-"):
        if str(code).isdigit() and int(code) >= 400 and not self.path.endswith("favicon.ico"):
            self.server.failed.append(f"{self.path} ({code})")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book in {HTML}: run `bash .ci/book` first, or set VAELIB_BOOK_HTML")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(HTML)))
    httpd.failed = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver (.ci/setup does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        f"--window-size={WIDTH},1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(180)
    yield driver
    driver.quit()


def screenshot(driver, path: Path) -> None:
    """The whole page, however tall, at the window's width: the viewport is made as tall as the page
    for the capture (a clip beyond the viewport draws some pages shifted sideways)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
def visit(server, browser):
    """doc -> what the browser saw on that page (each page is opened, and screenshotted, once)."""
    base = f"http://127.0.0.1:{server.server_address[1]}"
    seen: dict[str, dict] = {}

    def open_page(doc: str) -> dict:
        if doc not in seen:
            seen[doc] = {"error": "the first visit failed (see the first test of this page)"}  # not retried
            server.failed.clear()
            browser.get(f"{base}/{doc}.html")
            page = browser.execute_async_script(INSPECT_JS)
            if "error" not in page:
                SHOTS.mkdir(parents=True, exist_ok=True)
                page["screenshot"] = SHOTS / (doc.replace("/", "__") + ".png")
                screenshot(browser, page["screenshot"])
            seen[doc] = {**page, "base": base, "failed": list(server.failed)}
        assert "error" not in seen[doc], f"{doc}: {seen[doc]['error']}"
        return seen[doc]

    return open_page


@pytest.mark.parametrize("doc", PAGES)
def test_math_is_typeset_from_the_build_and_no_raw_tex_shows(doc, visit):
    page = visit(doc)
    if page["math"]:
        assert page["mathjax"] == "typeset", f"MathJax {page['mathjax']} (script {page['script']})"
        assert page["script"].startswith(page["base"] + "/_static/"), f"MathJax came from {page['script']}"
    assert not page["untypeset"], f"math left untypeset: {page['untypeset'][:3]}"
    assert not page["merror"], f"MathJax errors: {page['merror'][:3]}"
    raw = [
        " ".join(page["text"][max(0, m.start() - 30) : m.end() + 30].split()) for m in RAW_TEX.finditer(page["text"])
    ]
    assert not raw, f"raw TeX or an unrendered role in the visible text: {raw[:3]}"


@pytest.mark.parametrize("doc", PAGES)
def test_every_image_and_file_loads(doc, visit):
    page = visit(doc)
    assert not page["broken"], f"{len(page['broken'])} of {page['images']} images did not load: {page['broken'][:5]}"
    assert not page["failed"], f"the server answered errors: {page['failed'][:5]}"


@pytest.mark.parametrize("doc", PAGES)
def test_nothing_scrolls_sideways_at_1280_pixels(doc, visit):
    page = visit(doc)
    assert not page["code"], f"{len(page['code'])} code cell(s) scroll sideways: {page['code'][:3]}"
    assert not page["outputs"], f"{len(page['outputs'])} output(s) scroll sideways: {page['outputs'][:3]}"
    assert not page["prose"], f"{len(page['prose'])} equation(s) or code block(s) scroll sideways: {page['prose'][:3]}"
    assert page["page"] <= 0, f"the page is {page['page']} px wider than the window"


@pytest.mark.parametrize("doc", PAGES)
def test_a_screenshot_is_saved(doc, visit):
    shot = visit(doc)["screenshot"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, shot


def colab_url(doc: str) -> str:
    """Where the launch button must open ``doc``: Colab reading the repository of ``_config.yml``."""
    repo = CONFIG["repository"]
    github = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)/?", str(repo["url"]))
    assert github, f"_config.yml: repository.url {repo['url']!r} is not https://github.com/<owner>/<repo>"
    book = str(repo.get("path_to_book") or "").strip("/")
    path = f"{book}/{doc}" if book else doc
    return f"https://colab.research.google.com/github/{github[1]}/blob/{repo.get('branch') or 'main'}/{path}.ipynb"


@pytest.mark.parametrize("doc", NOTEBOOKS)
def test_notebook_pages_offer_the_ipynb_and_colab(doc, visit):
    links = visit(doc)["links"]
    name = doc.rsplit("/", 1)[-1] + ".ipynb"
    downloads = [h for h in links if h and h.rsplit("/", 1)[-1] == name and not h.startswith("http")]
    assert downloads, f"no download link to {name} (pytest-check-links checks that its target exists)"
    assert colab_url(doc) in links, f"no Colab launch link {colab_url(doc)}"


def test_the_references_page_lists_every_bib_entry(visit):
    pages = [doc for doc in PAGES if "{bibliography}" in SOURCES[doc].read_text(encoding="utf8")]
    assert len(pages) == 1, f"one page of _toc.yml must hold the {{bibliography}}, not {pages}"
    sphinx = CONFIG["sphinx"]["config"]
    style = find_plugin("pybtex.style.formatting", sphinx.get("bibtex_default_style", "alpha"))()
    expected = []
    for bibfile in CONFIG["bibtex_bibfiles"]:
        entries = parse_file(SOURCE / bibfile).entries.values()
        expected += [entry.text.render_as("text") for entry in style.format_entries(entries)]

    def plain(text: str) -> str:
        return " ".join(text.replace("\xa0", " ").split())

    shown = {plain(entry) for entry in visit(pages[0])["bibliography"]}
    missing = [entry for entry in map(plain, expected) if entry not in shown]
    assert expected and not missing, f"{len(missing)} of {len(expected)} entries missing, e.g. {missing[:2]}"
