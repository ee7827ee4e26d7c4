"""The API reference and the chapters' "Library" notes: complete, current, and correctly linked.

The pages of ``api/`` and the last cell of each chapter are written by ``tools/api_reference.py``
from the code; these tests fail when gdmlib or a chapter changed without rerunning it, and check
the table of which chapter uses what (``_ext/library_usage.py``) on small pieces of code.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))

import library_usage  # noqa: E402


def _load_tool() -> Any:
    path = ROOT / "tools" / "api_reference.py"
    spec = importlib.util.spec_from_file_location("api_reference_tool", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _load_tool()
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_pages_and_notes_are_current() -> None:
    problems = TOOL.stale_pages() + TOOL.stale_notes(CHAPTERS)
    assert not problems, "\n".join([*problems, "run: python tools/api_reference.py"])


def test_table_of_contents_lists_every_page() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = [
        entry for part in toc["parts"] for entry in part["chapters"] if entry["file"] == "api/index"
    ]
    assert len(entries) == 1, "_toc.yml must list api/index once, in the back matter"
    sections = [section["file"] for section in entries[0].get("sections", [])]
    assert sections == TOOL.toc_sections()


def test_every_public_module_is_documented() -> None:
    pages = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "api").glob("*.md"))
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", pages, re.MULTILINE))
    assert documented == set(library_usage.public_modules())


@pytest.mark.parametrize("module_name", library_usage.public_modules())
def test_every_exported_function_and_class_has_a_docstring(module_name: str) -> None:
    # autodoc silently leaves out a member without a docstring: it would vanish from the reference.
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no module docstring"
    missing = [
        name
        for name in getattr(module, "__all__", ())
        if (inspect.isfunction(obj := getattr(module, name)) or inspect.isclass(obj))
        and obj.__module__ == module_name
        and not obj.__doc__
    ]
    assert not missing, f"{module_name}: no docstring for {missing}"


def test_usage_follows_imports_and_re_exports() -> None:
    source = "\n".join(
        [
            'if False:\n    %pip install -q "gdmlib"',  # magics are blanked, not parsed
            "import gdmlib",
            "from gdmlib import gan, ot",
            "from gdmlib.vae import wae",
            "from gdmlib.estimate import mean_stderr as mse",
            "rt = gdmlib.runtime.setup(seed=0)",
            "n = rt.pick(quick=1, full=2)",  # setup() is annotated to return a Runtime
            "kde = gdmlib.likelihood.KernelDensity(x, 0.1)",
            "kde.log_prob(x)",  # a method of an instance of a gdmlib class
            "models = {1: kde}",
            "models[1].log_prob(x)",  # through a container: not followed
            "w = ot.wasserstein(x, y)",
            "gan.train_adversarial",  # re-exported by gdmlib.gan from gdmlib.gan.training
            "model = wae.make_autoencoder('ae', 2, 1)",
            "z = gdmlib.vae.VAE.loss",  # a method reached through its class
            "ot.not_a_function",
        ]
    )
    assert library_usage.code_usage(source) == {
        "gdmlib.estimate.mean_stderr",
        "gdmlib.gan.training.train_adversarial",
        "gdmlib.ot.wasserstein",
        "gdmlib.likelihood.KernelDensity",
        "gdmlib.likelihood.KernelDensity.log_prob",
        "gdmlib.runtime.Runtime.pick",
        "gdmlib.runtime.setup",
        "gdmlib.vae.model.VAE",  # every documented link of a chain counts
        "gdmlib.vae.model.VAE.loss",
        "gdmlib.vae.wae.make_autoencoder",
    }


def test_canonical_names() -> None:
    from gdmlib import divergences, estimate, gan, ot, plot

    assert library_usage.canonical_name(ot.wasserstein) == "gdmlib.ot.wasserstein"
    assert library_usage.canonical_name(gan.gradient_penalty) == "gdmlib.lipschitz.gradient_penalty"
    assert library_usage.canonical_name(divergences.Estimate) == "gdmlib.estimate.Estimate"
    assert library_usage.canonical_name(estimate) == "gdmlib.estimate"
    assert library_usage.canonical_name(plot.MAX_WIDTH) is None  # data: no function or class
    assert library_usage.canonical_name(len) is None


def test_every_chapter_uses_the_library_and_every_use_is_documented() -> None:
    usage = library_usage.chapter_usage(CHAPTERS)
    assert set(usage) == {path.stem for path in CHAPTERS}
    for chapter, names in usage.items():
        assert "gdmlib.runtime.setup" in names, f"{chapter}: the setup cell was not seen"
        assert len(names) >= 3, f"{chapter}: only {names}"
    users = library_usage.users_of(usage)
    assert users["gdmlib.ot.wasserstein"][0] == "05_disjoint_supports"
    assert all(chapters == sorted(chapters) for chapters in users.values())


def test_library_note_links_each_object_under_its_module() -> None:
    note = library_usage.library_note(
        ["gdmlib.ot.wasserstein", "gdmlib.ot.sinkhorn", "gdmlib.vae.model.VAE"]
    )
    assert note.startswith(":::{admonition} Library\n:class: seealso\n")
    assert note.endswith("\n:::")
    assert (
        "- {py:mod}`gdmlib.ot`: {py:obj}`sinkhorn <gdmlib.ot.sinkhorn>`, "
        "{py:obj}`wasserstein <gdmlib.ot.wasserstein>`" in note
    )
    assert "- {py:mod}`gdmlib.vae.model`: {py:obj}`VAE <gdmlib.vae.model.VAE>`" in note
