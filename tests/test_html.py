"""The built HTML book, as a reader's browser shows it, with no network.

Each chapter page of ``_build/html`` (build it with ``jupyter-book build .``) is opened in headless
Chromium, served from ``127.0.0.1`` while every other host name fails to resolve: a page that needs
a CDN (MathJax, require.js, a widget manager) cannot pass. Every page must show its figures, its
theorem and proof boxes, typeset maths, a Colab launch link, and no error output; it must read at
the design width (a 1400-px window: no display equation wider than the text column, no figure
shrunk below :data:`MIN_FIGURE_SCALE` of its size) and on a phone (a 412-px window: every display
equation fits once shrunk, by ``_ext/offline_html.py``, to at least half its size).

Run with ``python -m pytest -m browser tests/test_html.py``. Without a build, Chromium or its driver
the tests are skipped, except under ``CI=true``, where they fail: CI must not pass untested.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
COLAB_PREFIX = "https://colab.research.google.com/github/"
PAGE_TIMEOUT_S = 60
DESIGN_WINDOW = (1400, 1000)
PHONE_WINDOW = (412, 900)
# Figures are stored at 100 dpi (gdmlib.plot.style), so a 10-pt tick label is 13.9 px at full size
# and at least 10 px on screen above this scale. A gdmlib.plot.MAX_WIDTH-wide figure (10 in) shows
# at 0.74-0.77 in the 768-px output column of a 1400-px window.
MIN_FIGURE_SCALE = 0.72

pytestmark = pytest.mark.browser


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    if not (BUILD / "index.html").is_file():
        return (
            f"no built book at {BUILD.relative_to(ROOT)}/index.html "
            "(run `jupyter-book build .` first)"
        )
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} is missing (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def _skip_or_fail(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true and the HTML test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def _chapter_pages() -> list[str]:
    """The chapters of _toc.yml, as paths relative to the book root without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")) or {}
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            entry = node.get("file")
            if isinstance(entry, str) and entry.startswith("chapters/"):
                found.append(entry.removesuffix(".ipynb").removesuffix(".md"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def _page_params() -> list[Any]:
    pages = _chapter_pages()
    if not pages:
        return [pytest.param(None, marks=pytest.mark.skip(reason="_toc.yml lists no chapter yet"))]
    return [pytest.param(page, id=page.removeprefix("chapters/")) for page in pages]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The built book on a random local port; yields its base URL."""
    reason = _unavailable()
    if reason:
        _skip_or_fail(reason)
    handler = functools.partial(_QuietHandler, directory=str(BUILD))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, that can reach 127.0.0.1 and nothing else."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--window-size={DESIGN_WINDOW[0]},{DESIGN_WINDOW[1]}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        # Every host name but the local server fails to resolve: no CDN can serve the page.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager then downloads nothing.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


_WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done("ok"), (error) => done("MathJax failed: " + error));
  } else if (Date.now() - start > 20000) {
    done("MathJax never started (its script did not load?)");
  } else {
    setTimeout(poll, 100);
  }
})();
"""

_LOAD_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach((img) => { img.loading = "eager"; });
Promise.all(images.map((img) => img.complete ? null : new Promise((ok) => {
  img.addEventListener("load", ok); img.addEventListener("error", ok);
}))).then(() => done(null));
"""

_LAYOUT = """
const displays = Array.from(document.querySelectorAll('mjx-container[display="true"]'));
const overflow = (box) => {
  const math = box.querySelector("mjx-math");
  const need = math ? math.getBoundingClientRect().width : box.scrollWidth;
  return Math.round(need - box.getBoundingClientRect().width);
};
const label = (box) => (box.closest("div.math, .math") || box).textContent.trim().slice(0, 80);
return {
  window: window.innerWidth,
  overflowing: displays.filter((box) => overflow(box) > 1)
    .map((box) => `${overflow(box)} px hidden: ${label(box)}`),
  shrunk: displays.filter((box) => box.hasAttribute("data-fit-scale"))
    .map((box) => `scale ${box.getAttribute("data-fit-scale")}: ${label(box)}`),
  figureScales: Array.from(document.querySelectorAll(".cell_output img"))
    .filter((img) => img.naturalWidth > 0)
    .map((img) => [img.getBoundingClientRect().width / img.naturalWidth, img.naturalWidth]),
};
"""

_FACTS = """
const text = (el) => (el.textContent || "").trim();
const local = (url) => !url || /^(data|blob|about|javascript):/.test(url)
  || new URL(url, location.href).host === location.host;
const resources = [
  ...Array.from(document.querySelectorAll("script[src]"), (el) => el.src),
  ...Array.from(document.querySelectorAll("link[rel~=stylesheet][href], link[rel~=preload][href]"),
    (el) => el.href),
  ...Array.from(document.querySelectorAll("img[src], iframe[src]"), (el) => el.src),
  ...performance.getEntriesByType("resource").map((entry) => entry.name),
];
const mathSources = Array.from(document.querySelectorAll("span.math, div.math"));
return {
  title: document.title,
  figures: Array.from(document.querySelectorAll(".cell_output img"), (img) => img.src),
  brokenImages: Array.from(document.images).filter((img) => img.naturalWidth === 0)
    .map((img) => img.src),
  theorems: Array.from(document.querySelectorAll("div.proof.theorem"))
    .filter((el) => el.offsetHeight > 0).map(text),
  proofs: Array.from(document.querySelectorAll("div.proof"))
    .filter((el) => /^Proof\\b/.test(text(el))).map(text),
  mathSources: mathSources.length,
  untypesetMath: mathSources.filter((el) => !el.querySelector("mjx-container")).map(text)
    .slice(0, 5),
  mjxContainers: document.querySelectorAll("mjx-container").length,
  mathErrors: Array.from(document.querySelectorAll("mjx-merror"),
    (el) => el.getAttribute("data-mjx-error") || text(el)),
  mathjaxScripts: Array.from(document.querySelectorAll("script[src*='mathjax' i]"), (el) => el.src),
  colabLinks: Array.from(document.querySelectorAll("a[href^='https://colab.research.google.com/github/']"),
    (a) => a.href),
  errorOutputs: [
    ...Array.from(document.querySelectorAll(".cell_output .output.stderr, .cell_output .stderr"))
      .map(text).filter((t) => /Traceback|Error/.test(t)),
    ...Array.from(
      document.querySelectorAll(".cell_output .output.traceback, .cell_output .output.error"),
    ).map(text),
    ...Array.from(document.querySelectorAll(".cell_output .ansi-red-fg"))
      .map(text).filter((t) => /Traceback|Error/.test(t)),
    ...Array.from(document.querySelectorAll(".system-message, .problematic")).map(text),
  ].map((t) => t.slice(0, 300)),
  externalResources: [...new Set(resources.filter((url) => !local(url)))],
  libraryLinks: Array.from(document.querySelectorAll("div.admonition.seealso a[href*='api/']"),
    (a) => a.getAttribute("href")),
};
"""


@pytest.fixture(scope="module", params=_page_params())
def page(request: pytest.FixtureRequest, browser: Any, server: str) -> dict[str, Any]:
    """What a chapter page shows once its images have loaded and its maths is typeset."""
    name: str = request.param
    html = BUILD / f"{name}.html"
    assert html.is_file(), f"{html.relative_to(ROOT)} was not built although _toc.yml lists {name}"
    browser.get_log("browser")  # drop the previous page's messages
    browser.get(f"{server}/{name}.html")
    browser.execute_async_script(_LOAD_IMAGES)
    facts: dict[str, Any] = {"mathjax": browser.execute_async_script(_WAIT_FOR_MATHJAX)}
    facts.update(browser.execute_script(_FACTS))
    facts["name"] = name
    facts["design"] = browser.execute_script(_LAYOUT)
    try:
        browser.set_window_size(*PHONE_WINDOW)
        time.sleep(0.6)  # the page refits its displays 150 ms after a resize
        facts["phone"] = browser.execute_script(_LAYOUT)
    finally:
        browser.set_window_size(*DESIGN_WINDOW)
    facts["console"] = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry.get("level") == "SEVERE" and "favicon.ico" not in entry.get("message", "")
    ]
    return facts


def test_library_note_links_the_api_reference(page: dict[str, Any]) -> None:
    # The chapter's last cell (tools/api_reference.py): every gdmlib object it calls, linked.
    anchors = [href for href in page["libraryLinks"] if "#gdmlib." in href]
    assert anchors, f"{page['name']}: no 'Library' note linking to the API reference"


def test_api_reference_links_the_chapters(browser: Any, server: str) -> None:
    pages = sorted((BUILD / "api").glob("*.html"))
    assert len(pages) > 1, "the API reference (api/) was not built"
    browser.get(f"{server}/api/ot.html")
    entry = browser.find_element("id", "gdmlib.ot.wasserstein").find_element("xpath", "..")
    used_in = [
        link.get_attribute("href")
        for link in entry.find_elements("css selector", "a[href*='chapters/']")
    ]
    assert any("06_optimal_transport" in href for href in used_in), used_in
    for path in pages:
        browser.get(f"{server}/api/{path.name}")
        problems = browser.find_elements("css selector", ".system-message, .problematic")
        assert not problems, f"api/{path.name}: {[p.text[:200] for p in problems]}"


def test_theorems_are_numbered_within_the_chapter(page: dict[str, Any]) -> None:
    # _ext/chapter_numbers.py: chapter 5's theorems are Theorem 5.1, 5.2, ... in page order.
    chapter = int(page["name"].removeprefix("chapters/")[:2])
    numbers = [re.match(r"Theorem (\d+)\.(\d+)\b", text) for text in page["theorems"]]
    assert all(numbers), f"{page['name']}: {[text[:40] for text in page['theorems']]}"
    pairs = [(int(match.group(1)), int(match.group(2))) for match in numbers]
    assert pairs == [(chapter, k) for k in range(1, len(pairs) + 1)], pairs


def test_page_needs_no_network(page: dict[str, Any]) -> None:
    assert not page["externalResources"], (
        f"{page['name']} loads from other hosts: {page['externalResources']}"
    )
    failed = [message for message in page["console"] if "net::ERR" in message or "404" in message]
    assert not failed, f"{page['name']}: requests failed: {failed}"


def test_figures_are_shown(page: dict[str, Any]) -> None:
    assert page["figures"], f"{page['name']} shows no figure output"
    assert not page["brokenImages"], (
        f"{page['name']}: images that did not load: {page['brokenImages']}"
    )


def test_theorem_and_proof_boxes(page: dict[str, Any]) -> None:
    assert page["theorems"], f"{page['name']} shows no theorem box (div.proof.theorem)"
    assert page["proofs"], f"{page['name']} shows no proof box"


def test_maths_is_typeset_offline(page: dict[str, Any]) -> None:
    assert page["mathjax"] == "ok", f"{page['name']}: {page['mathjax']}"
    assert page["mathjaxScripts"] and all(
        s.startswith("http://127.0.0.1:") for s in page["mathjaxScripts"]
    ), f"{page['name']}: MathJax is not served by the book itself: {page['mathjaxScripts']}"
    assert page["mathSources"] > 0, f"{page['name']} has no maths"
    assert page["mjxContainers"] >= page["mathSources"], (
        f"{page['name']}: maths left raw: {page['untypesetMath']}"
    )
    assert not page["untypesetMath"], f"{page['name']}: maths left raw: {page['untypesetMath']}"
    assert not page["mathErrors"], f"{page['name']}: TeX errors: {page['mathErrors']}"


def test_colab_launch_link(page: dict[str, Any]) -> None:
    links = page["colabLinks"]
    assert links, f"{page['name']} has no 'launch on Colab' link"
    expected_end = f"/{page['name']}.ipynb"
    assert all(link.startswith(COLAB_PREFIX) and link.endswith(expected_end) for link in links), (
        f"{page['name']}: Colab links do not open this notebook: {links}"
    )


def test_no_error_output(page: dict[str, Any]) -> None:
    assert not page["errorOutputs"], f"{page['name']} shows errors: {page['errorOutputs']}"
    errors = [m for m in page["console"] if "net::ERR" not in m and "404" not in m]
    assert not errors, f"{page['name']}: JavaScript errors: {errors}"


def test_display_maths_fits_the_column_at_design_width(page: dict[str, Any]) -> None:
    layout = page["design"]
    assert not layout["overflowing"] and not layout["shrunk"], (
        f"{page['name']} in a {layout['window']}-px window: display equations wider than the "
        f"column (break them into lines): {layout['overflowing'] or layout['shrunk']}"
    )


def test_display_maths_fits_a_phone(page: dict[str, Any]) -> None:
    layout = page["phone"]
    assert not layout["overflowing"], (
        f"{page['name']} in a {layout['window']}-px window: display equations still overflow "
        f"at half size: {layout['overflowing']}"
    )


def test_figures_read_at_column_width(page: dict[str, Any]) -> None:
    small = [
        f"{natural} px shown at {scale:.2f}"
        for scale, natural in page["design"]["figureScales"]
        if scale < MIN_FIGURE_SCALE
    ]
    assert not small, (
        f"{page['name']}: figures shrunk below {MIN_FIGURE_SCALE:.0%} at the design width (make "
        f"them at most gdmlib.plot.MAX_WIDTH inches wide): {small}"
    )
