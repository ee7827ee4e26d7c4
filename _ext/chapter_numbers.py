"""Theorems, lemmas, definitions numbered within their chapter: Theorem 5.2 is chapter 5's second.

sphinx-proof numbers each kind of statement through the whole book (chapter 13 opened at
Theorem 50), and the chapters' toctree is not numbered (their titles carry the number, see
``_toc.yml``). After Sphinx has assigned its numbers, this extension renumbers every sphinx-proof
statement of a page ``chapters/NN_*`` as ``(NN, k)``, ``k`` counting that kind in page order; the
box titles and every ``{prf:ref}`` read the same table, so both show "Theorem NN.k". Figures,
tables and pages outside ``chapters/`` keep Sphinx's numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

CHAPTER_PAGE = re.compile(r"^chapters/(\d+)_")


def _proof_types() -> set[str]:
    from sphinx_proof.nodes import NODE_TYPES

    return set(NODE_TYPES)


def renumber(env: BuildEnvironment) -> list[str]:
    """Rewrite ``env.toc_fignumbers`` in place; return the pages whose numbers changed."""
    kinds = _proof_types()
    changed = []
    for docname, by_type in env.toc_fignumbers.items():
        match = CHAPTER_PAGE.match(docname)
        if not match:
            continue
        chapter = int(match.group(1))
        for figtype, numbers in by_type.items():
            if figtype not in kinds:
                continue
            in_page_order = sorted(numbers, key=lambda node_id: numbers[node_id])
            renumbered = {node_id: (chapter, k) for k, node_id in enumerate(in_page_order, 1)}
            if renumbered != numbers:
                by_type[figtype] = renumbered
                changed.append(docname)
    return changed


def _on_env_updated(app: Sphinx, env: BuildEnvironment) -> Iterable[str]:
    return sorted(set(renumber(env)))


def setup(app: Sphinx) -> dict[str, Any]:
    # After Sphinx's own numbering (the toctree collector, default priority 500).
    app.connect("env-get-updated", _on_env_updated, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
