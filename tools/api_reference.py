"""Write the API reference pages and each chapter's "Library" note; or check that they are current.

    python tools/api_reference.py          # rewrite api/*.md and the last cell of every chapter
    python tools/api_reference.py --check  # say what is stale, exit 1 (tests/test_api_reference.py)

- ``api/index.md`` documents the package ``gdmlib``; ``api/<name>.md`` one entry of
  ``gdmlib.__all__``: a module, or a package with one section per submodule. Sphinx's autodoc
  renders the docstrings (Google style, through napoleon; the maths through MathJax), and
  ``_ext/api_reference.py`` adds to each object the chapters that use it.
- The "Library" note is a Markdown cell tagged ``library-note`` at the end of each chapter: the
  gdmlib functions and classes its code uses, each linked to the API reference
  (``_ext/library_usage.py`` reads them from the code). A note is a Markdown cell, so rewriting it
  changes no output and needs no re-execution.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))

import library_usage  # noqa: E402

API_DIR = ROOT / "api"
CHAPTERS_DIR = ROOT / "chapters"

INDEX_INTRO = """\
# API reference

`gdmlib` is the library behind the chapters: every model, loss, estimator and training loop of the
book, tested, with the mathematics in its docstrings. One page per module, alphabetically; each
function and class lists the chapters that use it, and each chapter ends with a "Library" note
that links back here.

```{eval-rst}
.. automodule:: gdmlib
```

| module | summary |
| --- | --- |
"""


def _summary(module_name: str) -> str:
    doc = importlib.import_module(module_name).__doc__ or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return first.replace("|", "\\|").replace(":mod:", "").replace(":func:", "")


def _automodule(module_name: str, members: bool) -> str:
    options = "\n   :members:" if members else ""
    module = importlib.import_module(module_name)
    # A name re-exported from another module is documented there, once.
    imported = [
        name
        for name in getattr(module, "__all__", ())
        if members
        if getattr(getattr(module, name), "__module__", module_name) != module_name
    ]
    if imported:
        options += "\n   :exclude-members: " + ", ".join(imported)
    return f"```{{eval-rst}}\n.. automodule:: {module_name}{options}\n```\n"


def api_pages() -> dict[Path, str]:
    """The text of every page of the API reference, by path."""
    gdmlib = importlib.import_module("gdmlib")
    modules = library_usage.public_modules()
    names = [name for name in gdmlib.__all__ if not name.startswith("_")]
    pages: dict[Path, str] = {}
    rows = []
    for name in names:
        full = f"gdmlib.{name}"
        rows.append(f"| {{doc}}`{full} <{name}>` | {_summary(full)} |")
        submodules = [m for m in modules if m.startswith(full + ".")]
        if not submodules:
            pages[API_DIR / f"{name}.md"] = f"# `{full}`\n\n" + _automodule(full, members=True)
            continue
        text = f"# `{full}`\n\n" + _automodule(full, members=False)
        for submodule in submodules:
            text += f"\n## `{submodule}`\n\n" + _automodule(submodule, members=True)
        pages[API_DIR / f"{name}.md"] = text
    pages[API_DIR / "index.md"] = INDEX_INTRO + "\n".join(rows) + "\n"
    return pages


def toc_sections() -> list[str]:
    """The ``api/...`` entries the table of contents must list under ``api/index``."""
    gdmlib = importlib.import_module("gdmlib")
    return [f"api/{name}" for name in gdmlib.__all__ if not name.startswith("_")]


def _note_cell(source: str) -> dict:
    return {
        "cell_type": "markdown",
        "id": library_usage.LIBRARY_NOTE_TAG,  # nbformat 4.5: every cell has a unique id
        "metadata": {"tags": [library_usage.LIBRARY_NOTE_TAG]},
        "source": source.splitlines(keepends=True),
    }


def _is_note(cell: dict) -> bool:
    return library_usage.LIBRARY_NOTE_TAG in cell.get("metadata", {}).get("tags", [])


def chapter_notes(chapters: Sequence[Path]) -> dict[Path, str]:
    usage = library_usage.chapter_usage(chapters)
    return {path: library_usage.library_note(usage[path.stem]) for path in chapters}


def stale_notes(chapters: Sequence[Path]) -> list[str]:
    problems = []
    for path, note in chapter_notes(chapters).items():
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        if not cells or not _is_note(cells[-1]):
            problems.append(f"{path.name}: the last cell is not the library note")
        elif "".join(cells[-1]["source"]) != note or cells[-1].get("id") != "library-note":
            problems.append(f"{path.name}: the library note is stale")
        if sum(_is_note(cell) for cell in cells) > 1:
            problems.append(f"{path.name}: more than one library note")
    return problems


def write_notes(chapters: Sequence[Path]) -> None:
    for path, note in chapter_notes(chapters).items():
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = [cell for cell in notebook["cells"] if not _is_note(cell)]
        notebook["cells"] = [*cells, _note_cell(note)]
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            print(f"updated the library note of {path.name}")


def stale_pages() -> list[str]:
    problems = []
    for path, text in api_pages().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            problems.append(f"{path.relative_to(ROOT)} is missing or stale")
    expected = set(api_pages())
    problems += [
        f"{path.relative_to(ROOT)} documents nothing gdmlib exports"
        for path in API_DIR.glob("*.md")
        if path not in expected
    ]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report what is stale")
    args = parser.parse_args(argv)
    chapters = sorted(CHAPTERS_DIR.glob("*.ipynb"))
    if args.check:
        problems = stale_pages() + stale_notes(chapters)
        for problem in problems:
            print(problem)
        if problems:
            print("run: python tools/api_reference.py")
        return 1 if problems else 0
    API_DIR.mkdir(exist_ok=True)
    for path, text in api_pages().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    write_notes(chapters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
