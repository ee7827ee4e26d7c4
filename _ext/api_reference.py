"""The API reference inside the book: chapters linked to the functions they call, and back.

- Each function and class documented by autodoc gets a last line, "Used in:", linking the chapters
  whose code calls it (the table of ``_ext/library_usage.py``, read from the notebooks when the
  build starts).
- Cross-references to names a package re-exports (``:func:`train_adversarial``` in the docstring of
  :mod:`gdmlib.gan`) resolve to the page where the object is defined and documented
  (``gdmlib.gan.training.train_adversarial``): the objects are imported and their ``__module__``
  followed. References to other libraries' objects (``torch.Tensor`` in a signature: no network,
  hence no intersphinx) are rendered as plain text instead of warnings; a reference to a gdmlib
  name that is not documented still warns, and ``-W`` fails the build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import library_usage
from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

_USERS: dict[str, list[str]] = {}


def _read_usage(app: Sphinx) -> None:
    chapters = sorted(Path(app.srcdir, "chapters").glob("*.ipynb"))
    _USERS.clear()
    _USERS.update(library_usage.users_of(library_usage.chapter_usage(chapters)))


def _add_chapters(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    chapters = _USERS.get(name)
    if what in ("function", "class") and chapters:
        links = ", ".join(f":doc:`/chapters/{chapter}`" for chapter in chapters)
        lines.extend(["", f"**Used in:** {links}."])


def _resolve(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, owner = node.get("py:module"), node.get("py:class")
    scopes = [f"{module}.{owner}" if module and owner else None, module, None]
    for scope in scopes:
        found, obj = library_usage.lookup(f"{scope}.{target}" if scope else target)
        if not found:
            continue
        canonical = library_usage.canonical_name(obj)
        if canonical is not None:
            domain = env.get_domain("py")
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
            )
        if isinstance(obj, TypeVar):
            return contnode  # a signature's type variable: nothing to link to
        module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
        if not str(module).startswith(library_usage.PACKAGE):
            return contnode  # another library's object: plain text, no intersphinx offline
        return None
    if node["reftype"] == "attr":
        # A field of a NamedTuple or dataclass is described inside its class (napoleon_use_ivar),
        # so the link goes to the class: ``Fit.loss`` to ``Fit``, ``loss`` inside ``Fit`` too.
        parent = target.rpartition(".")[0] or owner
        if parent:
            return _resolve(app, env, _retarget(node, parent, "class"), contnode)
    return None


def _retarget(node: pending_xref, target: str, reftype: str) -> pending_xref:
    copy = node.deepcopy()
    copy["reftarget"], copy["reftype"] = target, reftype
    return copy


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _read_usage)
    app.connect("autodoc-process-docstring", _add_chapters)
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
