"""The Colab setup cell installs gdmlib from the repository, and a chapter then runs on it.

Every chapter's first cell (``tools/execute_notebooks.py`` writes it from ``_config.yml``) runs, on
Colab only, ``%pip install "gdmlib @ git+<repository>@v<version>"``. This test plays Colab:

- a **release** of the working tree: ``pyproject.toml``, ``README.md`` and ``gdmlib/`` committed to
  a fresh git repository and tagged ``v<version>``, as CONTRIBUTING.md's "Releasing" does on
  GitHub; the cell's URL is pointed at it (``git+file://``), the rest of the line unchanged;
- a **Colab-like environment**: a fresh virtual environment holding what Colab's image provides
  (torch, IPython, ipywidgets) and no gdmlib, Colab's environment variable ``COLAB_RELEASE_TAG``
  set, and ``google.colab`` importable and imported before the first cell, as in a Colab kernel;
- then chapter 1's code cells, the setup cell first, run by IPython (magics included), outside
  the repository so that nothing can import the checkout's ``gdmlib`` instead of the installed one.

It needs the package index (pip installs gdmlib's dependencies from it, torch from pip's cache or
the local wheel) and takes one to two minutes. Without ``git`` or the index it is skipped, except
under ``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from importlib.metadata import version as distribution_version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "chapters" / "01_divergences.ipynb"
# What Colab's image already holds, at the versions this book pins (requirements.txt).
COLAB_IMAGE = ["torch==2.13.0", "ipython", "ipywidgets>=8.1"]
TIMEOUT_S = 900


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False, **kwargs
    )


def _release(tmp: Path, version: str) -> Path:
    """The library as a tagged release would hold it, in a fresh git repository."""
    repo = tmp / "release"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "gdmlib", repo / "gdmlib", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.name=CI", "-c", "user.email=ci@localhost"]
    for command in (
        ["init", "-q"],
        ["add", "."],
        ["commit", "-q", "-m", f"gdmlib {version}"],
        ["tag", f"v{version}"],
    ):
        result = _run([*git, *command])
        assert result.returncode == 0, f"git {command[0]}: {result.stderr}"
    return repo


def _code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def test_colab_setup_cell_installs_gdmlib_and_runs_a_chapter(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        if _in_ci():
            pytest.fail("CI=true and git is missing: the Colab setup cannot be tested")
        pytest.skip("git is missing")
    version = distribution_version("gdmlib")  # pyproject.toml's, through the editable install
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    repo = _release(tmp_path, version)

    environment = tmp_path / "colab-venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    result = _run([str(python), "-m", "pip", "install", "-q", *COLAB_IMAGE])
    if result.returncode != 0:
        message = f"cannot install Colab's image {COLAB_IMAGE}: {result.stderr[-2000:]}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)

    # google.colab, importable and imported before the first cell, as in a Colab kernel.
    fake = tmp_path / "colab-modules" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text('"""A stand-in for Colab\'s module (tests only)."""\n')

    cells = _code_cells(CHAPTER)
    setup = cells[0]
    assert f"git+{url}@v{version}" in setup, "the setup cell does not install the book's release"
    cells[0] = setup.replace(f"git+{url}@", f"git+file://localhost{repo}@")
    script = tmp_path / "work" / "chapter.ipy"
    script.parent.mkdir()
    script.write_text(
        "\n\n".join(
            [
                "import google.colab",
                *cells,
                "import importlib.metadata, gdmlib",
                'print("gdmlib", importlib.metadata.version("gdmlib"), "from", gdmlib.__file__)',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")
    }
    env.update(
        PATH=f"{environment / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(fake.parent.parent),
        COLAB_RELEASE_TAG="release-colab-test",
        MPLBACKEND="Agg",
        GDM_SCALE="quick",
        GDM_DEVICE="cpu",
    )
    result = _run(
        [str(environment / "bin" / "ipython"), "--no-banner", "--colors=NoColor", str(script)],
        cwd=script.parent,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the chapter failed after the Colab setup:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    # The setup cell's report, then the last cell's: every cell in between ran.
    assert "device: cpu" in result.stdout and "scale: quick" in result.stdout, output[-4000:]
    installed = [line for line in result.stdout.splitlines() if line.startswith("gdmlib ")]
    assert installed, output[-4000:]
    assert installed[-1].startswith(f"gdmlib {version} from {environment}"), installed[-1]
    assert sys.prefix not in installed[-1]
