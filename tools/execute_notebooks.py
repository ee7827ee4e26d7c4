#!/usr/bin/env python3
r"""Regenerate the outputs stored in the chapters, the reference that ``pytest --nbval`` compares.

For every notebook given (by default every ``chapters/*.ipynb``) this script

1. rewrites the first code cell to the canonical setup cell (:func:`canonical_setup_cell`), whose
   Colab install line pins ``gdmlib`` to this book's repository (``repository.url`` in
   ``_config.yml``) at this book's version (``project.version`` in ``pyproject.toml``);
2. executes the notebook top to bottom in a fresh ``python3`` kernel, from ``chapters/``, in the
   conditions the tests use: ``GDM_SCALE=quick``, ``GDM_DEVICE=cpu``, one thread, the inline
   backend, with this working tree's ``gdmlib`` first on the path;
3. saves it with its outputs, without the volatile metadata (execution timestamps, widget state,
   the Python patch version) that would make every run a diff.

Run it after changing a chapter or gdmlib, then commit the notebooks::

    python tools/execute_notebooks.py                      # every chapter
    python tools/execute_notebooks.py chapters/01_*.ipynb  # some chapters
    python tools/execute_notebooks.py --check              # only check the setup cells (exit 1)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = [
    "REPO_ROOT",
    "canonical_setup_cell",
    "chapter_notebooks",
    "execute_notebook",
    "first_code_cell_index",
    "main",
    "set_setup_cell",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 120
# The environment the stored outputs are made in; conftest.py forces the same for nbval.
EXECUTION_ENV = {"GDM_SCALE": "quick", "GDM_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
# ipykernel's own default: figures are displayed as PNG outputs, as on Colab and in the HTML book.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

_SETUP_TEMPLATE = """\
# Setup (the same first cell in every chapter). On Colab, install gdmlib at this book's version.
import sys

if "google.colab" in sys.modules:
    %pip install -q "gdmlib @ git+{url}@v{version}"

import gdmlib

rt = gdmlib.runtime.setup(seed=0)"""


def canonical_setup_cell(root: Path | str = REPO_ROOT) -> str:
    """The source of the first code cell of every chapter.

    Args:
        root: The repository root holding ``_config.yml`` (for ``repository.url``) and
            ``pyproject.toml`` (for ``project.version``).

    Raises:
        ValueError: If either value is missing or the URL is not an ``https://`` URL.
    """
    root = Path(root)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    url = str((config.get("repository") or {}).get("url") or "").strip()
    if not url.startswith("https://"):
        raise ValueError(f"_config.yml: repository.url must be an https:// URL, got {url!r}")
    url = url.rstrip("/").removesuffix(".git")
    with (root / "pyproject.toml").open("rb") as file:
        version = str(tomllib.load(file).get("project", {}).get("version") or "").strip()
    if not version:
        raise ValueError("pyproject.toml: project.version is missing")
    return _SETUP_TEMPLATE.format(url=url, version=version)


def chapter_notebooks(root: Path | str = REPO_ROOT) -> list[Path]:
    """Every ``chapters/*.ipynb`` of the book, sorted by name."""
    return sorted((Path(root) / "chapters").glob("*.ipynb"))


def first_code_cell_index(notebook: nbformat.NotebookNode) -> int | None:
    """The index of the notebook's first code cell, or ``None`` if it has none."""
    return next((i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"), None)


def set_setup_cell(notebook: nbformat.NotebookNode, source: str) -> bool:
    """Make the first code cell hold ``source``; returns whether the notebook changed.

    A notebook without a code cell gets one after its title (its first cell, when markdown).
    """
    index = first_code_cell_index(notebook)
    if index is None:
        position = 1 if notebook.cells and notebook.cells[0].cell_type == "markdown" else 0
        notebook.cells.insert(position, nbformat.v4.new_code_cell(source))
        return True
    if notebook.cells[index].source == source:
        return False
    notebook.cells[index].source = source
    return True


def _kernel_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # One intra-op thread (conftest.py sets the same for nbval): identical arithmetic, and the
    # tiny networks train faster on two cores without torch's thread pool.
    env.update(EXECUTION_ENV)
    env["MPLBACKEND"] = INLINE_BACKEND
    # Outputs must come from this working tree's gdmlib, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    return env


def _clean_metadata(notebook: nbformat.NotebookNode) -> None:
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # timestamps: a diff on every run
        cell.metadata.pop("ExecuteTime", None)
    notebook.metadata.pop("widgets", None)
    notebook.metadata.pop("papermill", None)
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": KERNEL_NAME,
    }
    language_info = notebook.metadata.get("language_info")
    if isinstance(language_info, dict):
        language_info.pop("version", None)  # the maintainer's patch release, not the book's


def execute_notebook(
    path: Path | str, *, root: Path | str = REPO_ROOT, timeout: int = CELL_TIMEOUT_S
) -> float:
    """Set the setup cell, execute ``path`` in place and save it with its outputs.

    Args:
        path: The notebook.
        root: The repository root (for the setup cell and the ``gdmlib`` to import).
        timeout: Seconds allowed per cell.

    Returns:
        The wall time of the execution, in seconds.

    Raises:
        nbclient.exceptions.CellExecutionError: If a cell fails; the notebook is not saved then.
    """
    from nbclient import NotebookClient

    path, root = Path(path).resolve(), Path(root).resolve()
    notebook = nbformat.read(path, as_version=4)
    set_setup_cell(notebook, canonical_setup_cell(root))
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        allow_errors=False,
        record_timing=False,
        # Kept while executing (nbclient 0.11 fails on Output widgets, e.g. `interact`, without
        # it) and dropped before saving by _clean_metadata.
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute(env=_kernel_env(root))
    elapsed = time.perf_counter() - start
    _clean_metadata(notebook)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks (default: chapters/*.ipynb)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that every setup cell is canonical"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=CELL_TIMEOUT_S,
        help="seconds per cell (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    notebooks = args.notebooks or chapter_notebooks()
    if not notebooks:
        print("no notebooks found under chapters/", file=sys.stderr)
        return 1
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    expected = canonical_setup_cell()

    if args.check:
        stale = []
        for path in notebooks:
            notebook = nbformat.read(path, as_version=4)
            index = first_code_cell_index(notebook)
            if index is None or notebook.cells[index].source != expected:
                stale.append(path)
        for path in stale:
            print(f"{path}: first code cell is not the canonical setup cell", file=sys.stderr)
        if stale:
            print(
                "run: python tools/execute_notebooks.py " + " ".join(map(str, stale)),
                file=sys.stderr,
            )
            return 1
        print(f"{len(notebooks)} notebook(s): setup cells are canonical")
        return 0

    total = 0.0
    for path in notebooks:
        print(f"executing {path} ...", flush=True)
        elapsed = execute_notebook(path, timeout=args.timeout)
        total += elapsed
        print(f"  {elapsed:6.1f} s  {path}", flush=True)
    print(f"{len(notebooks)} notebook(s) executed in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
