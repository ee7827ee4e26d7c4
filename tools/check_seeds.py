#!/usr/bin/env python3
r"""Run chapters under other seeds and report every cell that fails: are the claims facts or luck?

The stored outputs come from fixed seeds. An ``assert`` about a trained model must not depend on
them: it must hold, with margin, for any seed (CONTRIBUTING.md, "Claims are facts"). This script
re-runs each notebook (without saving it) once per seed *offset*: a first, injected cell shifts
every seed the chapter sets — ``torch.manual_seed``, ``torch.Generator().manual_seed``,
``numpy.random.seed``, ``numpy.random.default_rng`` and ``random.seed``, so also
``gdmlib.runtime.setup(seed=0)`` — by the offset. Every draw, every initialisation and every
minibatch changes; the mathematics does not. It then lists the cells that raised, first the
``AssertionError`` s (a claim that did not hold), then the first other error.

Examples::

    python tools/check_seeds.py                                    # every chapter, offsets 1 2 3
    python tools/check_seeds.py --offsets 10 20 chapters/04_*.ipynb

The environment is that of ``tools/execute_notebooks.py`` (quick mode, CPU, one thread); set
``GDM_DEVICE=cuda`` to check on a GPU. Exit status 1 if any cell failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat

__all__ = ["SEED_SHIFT_CELL", "check_notebook", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Injected before the setup cell. Seeds stay non-negative; a subclass of torch.Generator keeps every
# isinstance check and every `generator=` argument working.
SEED_SHIFT_CELL = """\
import random as _random

import numpy as _np
import torch as _torch

_OFFSET = {offset}
_shift = lambda seed: (
    seed if seed is None or not isinstance(seed, (int, _np.integer)) else int(seed) + _OFFSET)
_torch_manual_seed, _np_seed, _np_default_rng, _random_seed = (
    _torch.manual_seed, _np.random.seed, _np.random.default_rng, _random.seed)
_torch.manual_seed = lambda seed: _torch_manual_seed(_shift(seed))
_np.random.seed = lambda seed=None: _np_seed(_shift(seed))
_np.random.default_rng = lambda seed=None: _np_default_rng(_shift(seed))
_random.seed = lambda seed=None, *args, **kwargs: _random_seed(_shift(seed), *args, **kwargs)


class _ShiftedGenerator(_torch.Generator):
    def manual_seed(self, seed):
        return super().manual_seed(_shift(seed))


_torch.Generator = _ShiftedGenerator"""


def _execute_notebooks_module():
    path = REPO_ROOT / "tools" / "execute_notebooks.py"
    spec = importlib.util.spec_from_file_location("execute_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_notebook(path: Path | str, offset: int, *, timeout: int = 120) -> tuple[float, list[str]]:
    """Execute ``path`` with every seed shifted by ``offset``; returns (seconds, failures).

    Each failure reads ``"cell N: ErrorName: message"``, N the index of the cell in the notebook
    as stored (the injected cell is not counted). Nothing is written to disk.
    """
    from nbclient import NotebookClient

    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    runner = _execute_notebooks_module()
    path = Path(path).resolve()
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(SEED_SHIFT_CELL.format(offset=offset)))
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=runner.KERNEL_NAME,
        allow_errors=True,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute(env=runner._kernel_env(REPO_ROOT))
    elapsed = time.perf_counter() - start
    assertions, others = [], []
    for index, cell in enumerate(notebook.cells[1:]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = (output.get("evalue") or "").strip().splitlines()
                if not message:  # a bare `assert`: show the failing line of the traceback
                    traceback = _ANSI.sub("", "\n".join(output.get("traceback", [])))
                    message = [
                        s.strip() for s in traceback.splitlines() if re.match(r"\s*-+> ", s)
                    ][-1:]
                line = f"cell {index}: {output.get('ename')}: {message[0] if message else ''}"
                (assertions if output.get("ename") == "AssertionError" else others).append(line)
    return elapsed, assertions + others[:1]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks (default: chapters/*.ipynb)"
    )
    parser.add_argument(
        "--offsets", nargs="+", type=int, default=[1, 2, 3], help="seed offsets (default: 1 2 3)"
    )
    parser.add_argument(
        "--timeout", type=int, default=120, help="seconds per cell (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((REPO_ROOT / "chapters").glob("*.ipynb"))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    failed = False
    for path in notebooks:
        for offset in args.offsets:
            elapsed, failures = check_notebook(path, offset, timeout=args.timeout)
            status = "ok" if not failures else "FAILED"
            print(f"{status:6} offset {offset:<4} {elapsed:6.1f} s  {path}", flush=True)
            for failure in failures:
                print(f"         {failure}", flush=True)
            failed = failed or bool(failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
