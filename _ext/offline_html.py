"""Make the HTML book work offline: MathJax served from the book, no broken inline scripts.

- MathJax 3 is copied into ``_static/mathjax`` and loaded from there, so maths typesets without a
  CDN. The files come from the ``sphinx-mathjax-offline`` package on PyPI, whose own extension
  cannot be imported (its wheel installs the module as ``sphinx-mathjax-offline/``, with hyphens).
- Display equations wider than the text column (on a phone, or in a narrow window) are shrunk to
  fit, down to half their size, by :data:`FIT_DISPLAY_MATH`; the scale applied is recorded in a
  ``data-fit-scale`` attribute, which ``tests/test_html.py`` reads. At the book's design width no
  display needs it: long displays are broken into lines in the source.
- Inline scripts added twice are dropped: sphinx-thebe adds its configuration after the builder is
  created, Sphinx 7 then lists it twice (filename ``None`` and ``''``), and the second copy throws
  "Identifier 'THEBE_JS_URL' has already been declared" on every page.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

MATHJAX_SCRIPT = "mathjax/tex-chtml.js"  # relative to _static/

# CHTML output is sized in em, so a smaller font size scales an equation and its layout box alike
# (a CSS transform would leave the box, and the scrollbar, at full width).
FIT_DISPLAY_MATH = """
(function () {
  const MIN_SCALE = 0.5;
  function fit() {
    for (const box of document.querySelectorAll('mjx-container[display="true"]')) {
      box.style.fontSize = "";
      box.removeAttribute("data-fit-scale");
      const math = box.querySelector("mjx-math");
      const need = math ? math.getBoundingClientRect().width : box.scrollWidth;
      const have = box.getBoundingClientRect().width;
      if (need > have + 1 && have > 0) {
        const scale = Math.max(MIN_SCALE, Math.floor((have / need) * 1000) / 1000);
        box.style.fontSize = (scale * 100).toFixed(1) + "%";
        box.setAttribute("data-fit-scale", scale.toFixed(3));
      }
    }
  }
  function start() {
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
      return setTimeout(start, 100);
    }
    MathJax.startup.promise.then(fit);
    let pending;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(fit, 150);
    });
  }
  document.addEventListener("DOMContentLoaded", start);
})();
"""


def mathjax_dir() -> Path:
    """The folder of the MathJax 3 files that ``sphinx-mathjax-offline`` installs."""
    try:
        package = distribution("sphinx-mathjax-offline")
    except PackageNotFoundError as error:
        raise ExtensionError("MathJax is missing: pip install sphinx-mathjax-offline") from error
    folder = Path(package.locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (folder / "tex-chtml.js").is_file():
        raise ExtensionError(f"MathJax is missing from {folder}: reinstall sphinx-mathjax-offline")
    return folder


def _use_local_mathjax(app: Sphinx, config: Config) -> None:
    config.mathjax_path = MATHJAX_SCRIPT


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        copy_asset(str(mathjax_dir()), str(Path(app.outdir) / "_static" / "mathjax"))


def _drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for script in scripts:
        key = (
            str(script.filename or ""),
            tuple(sorted((k, str(v)) for k, v in script.attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    mathjax_dir()  # fail before a long build, not after it
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.add_js_file(None, body=FIT_DISPLAY_MATH)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
