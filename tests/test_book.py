"""Structure of the book: table of contents, stored outputs, setup cells, theorems, citations.

These tests read the files only (no kernel, no build): they fail fast on a chapter that was edited
without being re-executed by ``tools/execute_notebooks.py``, or that lost what every chapter must
have. ``pytest --nbval`` then checks that the stored outputs are the ones the code produces.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
MAX_NOTEBOOK_BYTES = 2_000_000
MACHINE_DEPENDENT_TAG = "machine-dependent"
ALLOWED_TAGS = {
    "nbval-ignore-output",  # only for widget and progress-bar cells, see below
    MACHINE_DEPENDENT_TAG,  # numbers masked by conftest.py: trained results, see CONTRIBUTING.md
    "remove-input",
    "remove-output",
    "remove-cell",
    "hide-input",
    "hide-output",
    "hide-cell",
    "library-note",  # the last cell, written by tools/api_reference.py
}
IMAGE_MIME_TYPES = ("image/png", "image/svg+xml", "image/jpeg")
WIDGET_MIME_TYPE = "application/vnd.jupyter.widget-view+json"
# {cite}`key`, {cite:p}`a,b`, {cite:t}`key`: the keys between the backticks.
CITE_ROLE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")
BIB_ENTRY_KEY = re.compile(r"^\s*@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def _load_execute_notebooks() -> Any:
    path = ROOT / "tools" / "execute_notebooks.py"
    spec = importlib.util.spec_from_file_location("execute_notebooks", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_root_conftest() -> Any:
    path = ROOT / "conftest.py"
    spec = importlib.util.spec_from_file_location("root_conftest", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _toc_files(node: Any) -> Iterator[str]:
    """Every ``file:`` (and ``root:``) entry of a _toc.yml tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                yield value
            else:
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def _toc_entries() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [entry.removesuffix(".ipynb").removesuffix(".md") for entry in _toc_files(toc)]


def _notebook_params() -> list[Any]:
    if not CHAPTERS:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no notebook in chapters/ yet"))]
    return [pytest.param(path, id=path.stem) for path in CHAPTERS]


@pytest.fixture(scope="module", params=_notebook_params())
def chapter(request: pytest.FixtureRequest) -> tuple[Path, nbformat.NotebookNode]:
    path: Path = request.param
    return path, nbformat.read(path, as_version=4)


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _markdown(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


# The book as a whole -----------------------------------------------------------------------------


def test_every_chapter_is_in_the_toc_and_every_toc_file_exists() -> None:
    entries = _toc_entries()
    assert entries, "_toc.yml lists no file"
    missing = [
        e for e in entries if not any((ROOT / f"{e}{ext}").is_file() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
    unlisted = [
        p.name for p in CHAPTERS if p.relative_to(ROOT).with_suffix("").as_posix() not in entries
    ]
    assert not unlisted, f"chapters missing from _toc.yml (the build would skip them): {unlisted}"


def test_cited_keys_exist_in_references_bib() -> None:
    sources = [nbformat.read(p, as_version=4) for p in CHAPTERS]
    texts = {p.name: _markdown(nb) for p, nb in zip(CHAPTERS, sources)}
    for entry in _toc_entries():
        markdown_file = ROOT / f"{entry}.md"
        if markdown_file.is_file():
            texts[markdown_file.name] = markdown_file.read_text(encoding="utf-8")
    cited = {
        (name, key.strip())
        for name, text in texts.items()
        for keys in CITE_ROLE.findall(text)
        for key in keys.split(",")
        if key.strip()
    }
    if not cited:
        pytest.skip("no {cite} role in the book yet")
    bib_path = ROOT / "references.bib"
    assert bib_path.is_file(), "references.bib is missing but the book cites"
    known = set(BIB_ENTRY_KEY.findall(bib_path.read_text(encoding="utf-8")))
    unknown = sorted(f"{name}: {key}" for name, key in cited if key not in known)
    assert not unknown, f"cited keys missing from references.bib: {unknown}"


def test_readme_gives_the_install_and_test_commands() -> None:
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("no README.md yet")
    text = readme.read_text(encoding="utf-8")
    for command in ("pip install -r requirements.txt", "pytest --nbval"):
        assert command in text, f"README.md does not give the command `{command}`"


def test_canonical_setup_cell_pins_the_repository_and_version() -> None:
    source = _load_execute_notebooks().canonical_setup_cell(ROOT)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/").removesuffix(".git")
    assert f'"gdmlib @ git+{url}@v' in source
    assert source.splitlines()[0].startswith("# Setup")
    assert source.rstrip().endswith("rt = gdmlib.runtime.setup(seed=0)")


# Each chapter ------------------------------------------------------------------------------------


def test_kernelspec_is_python3(chapter: tuple[Path, nbformat.NotebookNode]) -> None:
    path, notebook = chapter
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernelspec is not python3"
    )


def test_first_code_cell_is_the_canonical_setup_cell(
    chapter: tuple[Path, nbformat.NotebookNode],
) -> None:
    path, notebook = chapter
    cells = _code_cells(notebook)
    assert cells, f"{path.name} has no code cell"
    expected = _load_execute_notebooks().canonical_setup_cell(ROOT)
    assert cells[0].source == expected, (
        f"{path.name}: the first code cell is not the canonical setup cell; "
        f"run `python tools/execute_notebooks.py chapters/{path.name}`"
    )


def test_cells_were_executed_in_order_top_to_bottom(
    chapter: tuple[Path, nbformat.NotebookNode],
) -> None:
    path, notebook = chapter
    counts = [cell.execution_count for cell in _code_cells(notebook) if cell.source.strip()]
    expected = list(range(1, len(counts) + 1))
    assert counts == expected, (
        f"{path.name}: execution counts {counts} are not 1..{len(counts)}: the stored outputs do "
        "not come from one top-to-bottom run; run `python tools/execute_notebooks.py "
        f"chapters/{path.name}`"
    )


def test_outputs_are_stored(chapter: tuple[Path, nbformat.NotebookNode]) -> None:
    path, notebook = chapter
    cells = _code_cells(notebook)
    assert any(cell.outputs for cell in cells), (
        f"{path.name} has no stored output: execute it before committing"
    )
    silent = [
        i
        for i, cell in enumerate(cells)
        if re.search(r"^print\(", cell.source, re.MULTILINE)
        and not cell.outputs
        and "remove-output" not in cell.metadata.get("tags", [])
    ]
    assert not silent, f"{path.name}: code cells {silent} print but store no output"


def test_no_error_is_stored(chapter: tuple[Path, nbformat.NotebookNode]) -> None:
    path, notebook = chapter
    for i, cell in enumerate(_code_cells(notebook)):
        for output in cell.outputs:
            assert output.output_type != "error", (
                f"{path.name}: code cell {i} stores an error: {output.get('ename')}"
            )
            if output.output_type == "stream" and output.name == "stderr":
                assert "Traceback" not in output.text, (
                    f"{path.name}: code cell {i} stores a traceback on stderr"
                )


def test_no_volatile_metadata(chapter: tuple[Path, nbformat.NotebookNode]) -> None:
    path, notebook = chapter
    volatile = ("execution", "ExecuteTime")
    timed = [
        i for i, cell in enumerate(notebook.cells) if any(key in cell.metadata for key in volatile)
    ]
    assert not timed, (
        f"{path.name}: cells {timed} store execution timestamps; save with "
        "tools/execute_notebooks.py"
    )
    assert "widgets" not in notebook.metadata, (
        f"{path.name} stores widget state; save with tools/execute_notebooks.py"
    )


def test_notebook_is_small(chapter: tuple[Path, nbformat.NotebookNode]) -> None:
    path, _ = chapter
    size = path.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, (
        f"{path.name} is {size / 1e6:.1f} MB (limit 2 MB): lower the figures' dpi or count"
    )


def test_cell_tags_are_allowed(chapter: tuple[Path, nbformat.NotebookNode]) -> None:
    path, notebook = chapter
    for i, cell in enumerate(notebook.cells):
        tags = set(cell.metadata.get("tags", []))
        unknown = tags - ALLOWED_TAGS
        assert not unknown, (
            f"{path.name}: cell {i} has tags {sorted(unknown)}; allowed: {sorted(ALLOWED_TAGS)} "
            "(nbval-skip and raises-exception are forbidden: every cell runs and is compared)"
        )
        if "nbval-ignore-output" in tags:
            shows_widget = any(
                WIDGET_MIME_TYPE in output.get("data", {}) for output in cell.get("outputs", [])
            )
            uses_progress = (
                re.search(r"\b(progress|tqdm|interact\w*|widgets?)\b", cell.source) is not None
            )
            assert shows_widget or uses_progress, (
                f"{path.name}: cell {i} is tagged nbval-ignore-output but shows no widget or "
                "progress bar; its numbers must be compared"
            )


def test_machine_dependent_cells_state_their_claims_as_asserts(
    chapter: tuple[Path, nbformat.NotebookNode],
) -> None:
    # A cell whose numbers nbval does not compare must check what it prints: its asserts are
    # what CI verifies of it, on every machine.
    path, notebook = chapter
    for i, cell in enumerate(notebook.cells):
        tags = set(cell.metadata.get("tags", []))
        if MACHINE_DEPENDENT_TAG not in tags:
            continue
        assert cell.cell_type == "code", (
            f"{path.name}: cell {i} is markdown but tagged {MACHINE_DEPENDENT_TAG}"
        )
        assert "nbval-ignore-output" not in tags, (
            f"{path.name}: cell {i} has both {MACHINE_DEPENDENT_TAG} and nbval-ignore-output; keep "
            "one"
        )
        assert re.search(r"^\s*assert\b", cell.source, re.MULTILINE), (
            f"{path.name}: cell {i} is tagged {MACHINE_DEPENDENT_TAG} but asserts nothing: state "
            "the claims its printed numbers support as asserts that hold on any machine and seed"
        )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("ELBO -21.94 ± 0.31,  perplexity 14.5 of K = 16", "ELBO # ± #, perplexity # of K = #"),
        (
            "W1 3e-04 (12%), PacGAN2 on the ring: inf in 2 of 3",
            "W1 # (#), PacGAN2 on the ring: # in # of #",
        ),
        (
            "\u2212 signs: \u22120.5, -inf, +nan; names v2 x_1",
            "\u2212 signs: #, #, #; names v2 x_1",
        ),
        ("  n     W1\n 10  0.411\n", " n W1\n # #\n"),
    ],
)
def test_mask_numbers(text: str, masked: str) -> None:
    assert _load_root_conftest().mask_numbers(text) == masked


def test_machine_dependent_cells_are_compared_with_numbers_masked(tmp_path: Path) -> None:
    # End to end through nbval and the root conftest.py: a changed number fails an ordinary cell
    # and passes a tagged one; changed words fail both.
    import subprocess
    import sys

    cells = {
        "plain_same": ("print('x = 1.5')", "x = 1.5\n", True),
        "plain_changed": ("print('x = 1.5')", "x = 1.4\n", False),
        "tagged_changed_number": ("print('x = 1.5 ± 0.25')", "x =   1.47 ± 0.3\n", True),
        "tagged_changed_words": ("print('y = 1.5')", "x = 1.5\n", False),
    }
    (tmp_path / "conftest.py").write_text(
        (ROOT / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    for name, (source, stored, _) in cells.items():
        cell = nbformat.v4.new_code_cell(source, execution_count=1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
        if name.startswith("tagged"):
            cell.metadata["tags"] = [MACHINE_DEPENDENT_TAG]
        notebook = nbformat.v4.new_notebook(cells=[cell])
        notebook.metadata["kernelspec"] = {
            "display_name": "Python 3",
            "language": "python",
            "name": "python3",
        }
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "-p",
            "no:cacheprovider",
            "-rA",
            "-q",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    for name, (_, _, passes) in cells.items():
        expected = "PASSED" if passes else "FAILED"
        assert re.search(rf"^{expected} {name}\.ipynb::Cell 0", result.stdout, re.MULTILINE), (
            f"{name}: expected {expected}\n{result.stdout[-3000:]}"
        )


def test_chapter_has_a_theorem_a_proof_and_a_figure(
    chapter: tuple[Path, nbformat.NotebookNode],
) -> None:
    path, notebook = chapter
    markdown = _markdown(notebook)
    for directive in ("prf:theorem", "prf:proof"):
        assert re.search(r"^\s*(`{3,}|:{3,})\{" + directive + r"\}", markdown, re.MULTILINE), (
            f"{path.name} has no {{{directive}}} box"
        )
    images = [
        output
        for cell in _code_cells(notebook)
        for output in cell.outputs
        if any(mime in output.get("data", {}) for mime in IMAGE_MIME_TYPES)
    ]
    assert images, f"{path.name} stores no figure"


def test_chapter_ends_with_exercises_then_the_library_note(
    chapter: tuple[Path, nbformat.NotebookNode],
) -> None:
    # CONTRIBUTING.md, "Exercises": per exercise a statement, a folded solution, a hidden check.
    path, notebook = chapter
    number = int(path.name[:2])
    cells = notebook.cells
    assert "library-note" in cells[-1].metadata.get("tags", []), f"{path.name}: no library note"
    headings = [i for i, cell in enumerate(cells) if cell.source.startswith("## Exercises")]
    assert len(headings) == 1, f"{path.name}: expected one '## Exercises' section"
    rest = cells[headings[0] + 1 : -1]
    assert len(rest) % 3 == 0, f"{path.name}: exercises come as statement, solution, check"
    exercises = [rest[i : i + 3] for i in range(0, len(rest), 3)]
    assert 2 <= len(exercises) <= 4, f"{path.name}: {len(exercises)} exercises"
    for k, (statement, solution, check) in enumerate(exercises, 1):
        label = f"Exercise {number}.{k}"
        assert statement.cell_type == "markdown" and statement.source.startswith(f"**{label}**"), (
            f"{path.name}: cell {cells.index(statement)} should open with **{label}**"
        )
        assert solution.cell_type == "markdown" and re.match(
            r":{3,}\{admonition\} Solution\n:class: dropdown\n", solution.source
        ), f"{path.name}: {label}'s solution is not a folded admonition"
        assert check.cell_type == "code" and "hide-cell" in check.metadata.get("tags", []), (
            f"{path.name}: {label}'s check is not a code cell tagged hide-cell"
        )
        assert re.search(r"^\s*assert\b", check.source, re.MULTILINE), (
            f"{path.name}: {label}'s check asserts nothing"
        )


def test_check_seeds_shifts_every_seed_and_reports_failed_claims(tmp_path: Path) -> None:
    # A claim that holds only for the stored seeds passes at offset 0 and fails at offset 1, for
    # each way a chapter seeds: the global torch seed, a torch.Generator, a NumPy generator.
    import numpy as np
    import torch

    spec = importlib.util.spec_from_file_location("check_seeds", ROOT / "tools" / "check_seeds.py")
    assert spec is not None and spec.loader is not None
    check_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_seeds)
    torch.manual_seed(3)
    global_draw = torch.rand(1).item()
    local_draw = torch.rand(1, generator=torch.Generator().manual_seed(5)).item()
    numpy_draw = int(np.random.default_rng(7).integers(10**9))
    sources = [
        f"import torch\ntorch.manual_seed(3)\nassert torch.rand(1).item() == {global_draw!r}",
        "import torch\ng = torch.Generator().manual_seed(5)\n"
        f"assert torch.rand(1, generator=g).item() == {local_draw!r}",
        f"import numpy as np\nassert np.random.default_rng(7).integers(10**9) == {numpy_draw}",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    path = tmp_path / "claim.ipynb"
    nbformat.write(notebook, path)
    assert check_seeds.check_notebook(path, 0)[1] == []
    failures = check_seeds.check_notebook(path, 1)[1]
    assert [failure.split(":")[0] for failure in failures] == ["cell 0", "cell 1", "cell 2"], (
        failures
    )
    assert all("AssertionError" in failure for failure in failures)
