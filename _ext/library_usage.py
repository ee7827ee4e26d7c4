"""Which ``gdmlib`` objects each chapter calls, read from the notebooks' code.

The API reference (``api/``) and the chapters link to each other from this one table:

- :func:`chapter_usage` parses the code cells of every chapter (IPython magics blanked out), follows
  the ``gdmlib`` imports (``from gdmlib import ot``, ``from gdmlib.vae import wae``,
  ``import gdmlib``) and records every attribute chain that reaches a public, documented function
  or class: ``ot.wasserstein(...)`` becomes ``gdmlib.ot.wasserstein``. A name re-exported by a
  package (``gan.train_adversarial``) is recorded where it is defined and documented
  (``gdmlib.gan.training.train_adversarial``). Methods reached through instances (``rt.pick``)
  cannot be seen without running the code and are not recorded.
- :func:`library_note` writes a chapter's "Library" note, the last cell of each notebook, which
  links every recorded object to its entry in the API reference (``tools/library_notes.py``
  rewrites it; ``tests/test_api_reference.py`` checks that it is current).
- ``_ext/api_reference.py`` appends to each documented object the chapters that use it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

__all__ = [
    "LIBRARY_NOTE_TAG",
    "canonical_name",
    "chapter_usage",
    "code_usage",
    "library_note",
    "lookup",
    "public_modules",
    "users_of",
]

LIBRARY_NOTE_TAG = "library-note"
PACKAGE = "gdmlib"
MAGIC_LINE = re.compile(r"^(\s*)[%!].*$", re.MULTILINE)


@functools.cache
def public_modules() -> tuple[str, ...]:
    """Every public module of gdmlib (no name part starting with ``_``), sorted."""
    import pkgutil

    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return tuple(sorted(names))


def _documented(module: ModuleType, name: str) -> bool:
    return name in getattr(module, "__all__", ())


def canonical_name(obj: object) -> str | None:
    """The dotted name under which the API reference documents ``obj``, or ``None``.

    A module is documented under its own name; a function or class where it is defined, if its
    module lists it (or, for a method, its class) in ``__all__`` and it has a docstring (autodoc
    skips undocumented members).
    """
    if inspect.ismodule(obj):
        name = obj.__name__
        return name if name in public_modules() else None
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return None
    module_name = getattr(obj, "__module__", "") or ""
    if not module_name.startswith(PACKAGE):
        return None
    module = importlib.import_module(module_name)
    owner = obj.__qualname__.split(".")[0]
    if "<" in obj.__qualname__ or not _documented(module, owner) or not obj.__doc__:
        return None
    return f"{module_name}.{obj.__qualname__}"


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _resolve(path: str) -> str | None:
    """The canonical name of the deepest documented object along ``gdmlib.a.b.c``."""
    parts = path.split(".")
    obj: object = importlib.import_module(parts[0])
    found = canonical_name(obj)
    for part in parts[1:]:
        if not hasattr(obj, part):
            break
        obj = getattr(obj, part)
        name = canonical_name(obj)
        if name is None:
            break
        found = name
    return found


def lookup(dotted: str) -> tuple[bool, object]:
    """``(True, obj)`` for the object at ``dotted`` (the longest importable module prefix, then
    attributes: ``torch.Tensor``, ``gdmlib.vae.VAE.loss``), ``(False, None)`` if there is none."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            if not hasattr(obj, part):
                return False, None
            obj = getattr(obj, part)
        return True, obj
    return False, None


def _instance_class(call: ast.Call, aliases: dict[str, str]) -> type | None:
    """The gdmlib class of what ``call`` returns: a documented class called, or a documented
    function whose return annotation is one (``rt = gdmlib.runtime.setup()`` is a ``Runtime``)."""
    dotted = _dotted(call.func)
    head, _, rest = (dotted or "").partition(".")
    if head not in aliases:
        return None
    _, obj = lookup(aliases[head] + (f".{rest}" if rest else ""))
    if inspect.isfunction(obj) and canonical_name(obj) is not None:
        try:
            obj = typing.get_type_hints(obj).get("return")
        except (NameError, TypeError):  # an annotation that does not evaluate: no type to follow
            return None
    if inspect.isclass(obj) and canonical_name(obj) is not None:
        return obj
    return None


def code_usage(source: str) -> set[str]:
    """The canonical names of the gdmlib objects that a piece of notebook code uses.

    Besides names reached through imports, methods of gdmlib objects bound to a plain name are
    seen when the name is assigned from a gdmlib class or from a function annotated to return one
    (``rt = gdmlib.runtime.setup(...)`` then ``rt.pick``); a name bound to several such classes in
    the chapter counts for each.
    """
    source = MAGIC_LINE.sub(lambda match: f"{match.group(1)}pass", source)
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    aliases[alias.asname or PACKAGE] = alias.name if alias.asname else PACKAGE
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    instances: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
        ):
            cls = _instance_class(node.value, aliases)
            if cls is not None:
                path = f"{cls.__module__}.{cls.__qualname__}"
                instances.setdefault(node.targets[0].id, set()).add(path)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(
            getattr(node, "ctx", None), ast.Load
        ):
            dotted = _dotted(node)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            if head in aliases:
                path = aliases[head] + (f".{rest}" if rest else "")
                name = _resolve(path)
                if name is not None and name not in public_modules():
                    used.add(name)
            elif head in instances and rest:
                for class_path in instances[head]:
                    name = _resolve(f"{class_path}.{rest}")
                    if name is not None and name != class_path:
                        used.add(name)
    for alias_path in aliases.values():
        name = _resolve(alias_path)
        if name is not None and name not in public_modules():
            used.add(name)
    return used


def _code_cells(notebook: Path) -> Iterable[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            source = cell["source"]
            yield "".join(source) if isinstance(source, list) else source


def chapter_usage(chapters: Iterable[Path]) -> dict[str, list[str]]:
    """For each chapter (by its path stem), the sorted canonical names of what it uses."""
    # One source per chapter: an import in one cell serves every later cell.
    return {
        notebook.stem: sorted(code_usage("\n".join(_code_cells(notebook))))
        for notebook in sorted(chapters)
    }


def users_of(usage: dict[str, list[str]]) -> dict[str, list[str]]:
    """The reverse table: for each canonical name, the chapters that use it."""
    users: dict[str, list[str]] = {}
    for chapter, names in sorted(usage.items()):
        for name in names:
            users.setdefault(name, []).append(chapter)
    return users


def _module_of(name: str) -> str:
    obj_module = name
    while obj_module not in public_modules():
        obj_module = obj_module.rpartition(".")[0]
    return obj_module


def library_note(names: Iterable[str]) -> str:
    """The Markdown of a chapter's "Library" note: each used object linked to the API reference."""
    by_module: dict[str, list[str]] = {}
    for name in sorted(names):
        by_module.setdefault(_module_of(name), []).append(name)
    lines = [
        ":::{admonition} Library",
        ":class: seealso",
        "",
        "This chapter calls these functions and classes of `gdmlib`; each links to its entry in",
        "the {doc}`API reference </api/index>`, which lists the chapters that use it.",
        "",
    ]
    for module, members in sorted(by_module.items()):
        links = ", ".join(f"{{py:obj}}`{name[len(module) + 1 :]} <{name}>`" for name in members)
        lines.append(f"- {{py:mod}}`{module}`: {links}")
    lines.append(":::")
    return "\n".join(lines)
