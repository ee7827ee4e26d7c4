"""Root pytest configuration, loaded for unit tests, doctests and notebooks alike.

Notebooks compared by nbval must produce the outputs stored in them, which were made on a CPU in
quick mode: force both here, so that a maintainer with a GPU gets the same comparison. The kernel
that nbval starts inherits this environment.

What nbval compares (the policy of CONTRIBUTING.md, "Outputs, nbval and tags"): every output is
compared strictly, except in cells tagged ``machine-dependent``: cells whose printed numbers come
from a trained network, an optimizer or a long chain of float operations, which drift from one CPU
(or GPU) to another. There every number is masked before the comparison (see
:func:`mask_numbers`), so the text around the numbers is still compared while the claims that the
numbers support are the cell's ``assert`` statements, which must hold on any machine.
"""

from __future__ import annotations

import os
import re
from typing import Any

os.environ["GDM_SCALE"] = "quick"
os.environ["GDM_DEVICE"] = "cpu"
# One intra-op thread: the book's networks are tiny, and on two cores torch's thread pool makes
# their training 10-40x slower. tools/execute_notebooks.py uses the same setting, so the stored
# outputs and nbval's fresh ones come from the same arithmetic.
os.environ["OMP_NUM_THREADS"] = "1"

MACHINE_DEPENDENT_TAG = "machine-dependent"

# A decimal number with optional sign, exponent and percent sign (1, -0.25, +3.1e-05, .5, 12%,
# −2.0), or inf/nan; digits inside names (W1, PacGAN2, log2) are not numbers.
_NUMBER = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?(?!\w|\.\d)"
    r"|(?<![\w.])[-+\u2212]?(?:inf|nan)(?!\w)",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t]+")


def mask_numbers(text: str) -> str:
    """``text`` with every number replaced by ``#`` and runs of spaces collapsed to one.

    A number's width changes the alignment of a printed table, so spaces are collapsed too; line
    breaks, words and symbols stay as they are.

    >>> mask_numbers("ELBO -21.94 ± 0.31,  perplexity 14.5 of K = 16 (W1 3e-04, 12%)")
    'ELBO # ± #, perplexity # of K = # (W1 #, #)'
    """
    return _SPACES.sub(" ", _NUMBER.sub("#", text))


def _masked(sanitize: Any) -> Any:
    def sanitize_and_mask(value: Any) -> Any:
        value = sanitize(value)
        return mask_numbers(value) if isinstance(value, str) else value

    return sanitize_and_mask


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Compare the cells tagged ``machine-dependent`` with their numbers masked."""
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or not hasattr(item, "sanitize"):
            continue  # not a notebook cell of nbval
        if MACHINE_DEPENDENT_TAG in cell.get("metadata", {}).get("tags", []):
            item.sanitize = _masked(item.sanitize)
