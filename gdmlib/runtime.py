r"""Where and how big a chapter runs: device, seeding, the quick/full size switch, progress bars.

Used by every chapter's setup cell.

Every chapter starts with :func:`setup`, which seeds every generator, picks the device
(CUDA > MPS > CPU) and decides the *scale*: ``"quick"`` (the default on a CPU: a real but small
experiment that runs in well under a minute on two cores) or ``"full"`` (the default on a GPU).
Chapters read their sizes through :func:`pick` and never branch on the device themselves, so the
same notebook is the CPU-sized experiment in CI and the large one on Colab.

Two environment variables override the automatic choice:

- ``GDM_SCALE=quick|full`` forces the scale (the test suite forces ``quick``);
- ``GDM_DEVICE=cpu|cuda|cuda:1|mps`` forces the device (the test suite forces ``cpu``).

A third turns on checkpoints: with ``GDM_CHECKPOINT_DIR=folder`` (on Colab, a folder of a mounted
Google Drive), the long training runs of the chapters save their state there and a rerun of the
chapter after a disconnection resumes them where they stopped (:func:`checkpoint_path`). Unset, as
in CI, nothing is written.

Example:
    >>> import gdmlib
    >>> rt = gdmlib.runtime.setup(seed=0, verbose=False)
    >>> gdmlib.runtime.pick(quick=1_000, full=100_000, scale="quick")
    1000
"""

from __future__ import annotations

import os
import platform
import random
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch

__all__ = [
    "Runtime",
    "Scale",
    "checkpoint_path",
    "get_device",
    "get_scale",
    "pick",
    "progress",
    "seed_everything",
    "setup",
    "single_threaded",
]

Scale = Literal["quick", "full"]
T = TypeVar("T")

_SCALES = ("quick", "full")
_current: Runtime | None = None


@dataclass(frozen=True)
class Runtime:
    """What :func:`setup` decided.

    Attributes:
        device: The device every tensor of the chapter should live on.
        scale: ``"quick"`` or ``"full"``.
        seed: The seed every generator was set to.
    """

    device: torch.device
    scale: Scale
    seed: int

    @property
    def quick(self) -> bool:
        """Whether the chapter runs at its small (CPU, CI) size."""
        return self.scale == "quick"

    def pick(self, *, quick: T, full: T) -> T:
        """The value for this runtime's scale (see :func:`pick`)."""
        return quick if self.quick else full

    def checkpoint_path(self, name: str) -> Path | None:
        """Where a training run called ``name`` keeps its checkpoint at this scale (see
        :func:`checkpoint_path`)."""
        return checkpoint_path(name, scale=self.scale)


def get_device(name: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    Args:
        name: A device to use instead (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``). When
            ``None``, the environment variable ``GDM_DEVICE`` is read, then the hardware.

    Raises:
        ValueError: If the requested device does not exist on this machine.
    """
    name = name if name is not None else os.environ.get("GDM_DEVICE") or None
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(
            f"unknown device {name!r}: expected 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was requested but MPS is not available on this machine")
    return device


def get_scale(device: torch.device | None = None) -> Scale:
    """The size mode: ``GDM_SCALE`` if set, else ``"full"`` on a GPU and ``"quick"`` elsewhere.

    Raises:
        ValueError: If ``GDM_SCALE`` holds anything but ``quick`` or ``full``.
    """
    value = os.environ.get("GDM_SCALE", "").strip().lower()
    if value:
        if value not in _SCALES:
            raise ValueError(f"GDM_SCALE must be 'quick' or 'full', got {value!r}")
        return value  # type: ignore[return-value]
    device = device if device is not None else get_device()
    return "full" if device.type == "cuda" else "quick"


def pick(*, quick: T, full: T, scale: Scale | None = None) -> T:
    """The value that belongs to the current scale.

    Args:
        quick: Used in quick mode (CPU, CI).
        full: Used in full mode (GPU).
        scale: The scale to use; by default the one chosen by :func:`setup`, else
            :func:`get_scale`.
    """
    if scale is None:
        scale = _current.scale if _current is not None else get_scale()
    if scale not in _SCALES:
        raise ValueError(f"scale must be 'quick' or 'full', got {scale!r}")
    return quick if scale == "quick" else full


_CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def checkpoint_path(name: str, *, scale: Scale | None = None) -> Path | None:
    """The checkpoint file of a chapter's training run, or ``None`` when checkpoints are off.

    Checkpoints are on when the environment variable ``GDM_CHECKPOINT_DIR`` names a folder (created
    if missing); the file is ``<folder>/<name>-<scale>.pt``, so that quick and full runs never
    resume from each other. Pass the result as the ``checkpoint_path`` of
    :func:`gdmlib.training.fit` or :func:`gdmlib.gan.train_adversarial`: the run then saves its
    state every few hundred steps and, when the chapter is run again, resumes exactly where it
    stopped (a finished run returns at once). Delete the folder after changing a chapter's code:
    a checkpoint holds the old run.

    Args:
        name: The run's name, unique in the book (letters, digits, ``_``, ``-``, ``.``), e.g.
            ``"10-vae-d5"``.
        scale: ``"quick"`` or ``"full"``; by default that of the last :func:`setup` (or
            :func:`get_scale`).

    Returns:
        The path, or ``None`` when ``GDM_CHECKPOINT_DIR`` is unset or empty (the default, and CI).

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If ``name`` holds other characters, or ``scale`` is not a scale.

    Example:
        >>> import os
        >>> _ = os.environ.pop("GDM_CHECKPOINT_DIR", None)  # off: the default
        >>> checkpoint_path("10-vae-d5", scale="quick") is None
        True
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not _CHECKPOINT_NAME.fullmatch(name):
        raise ValueError(
            f"name must be letters, digits, '_', '-' or '.', starting with a letter or digit, "
            f"got {name!r}"
        )
    if scale is None:
        scale = _current.scale if _current is not None else get_scale()
    if scale not in _SCALES:
        raise ValueError(f"scale must be 'quick' or 'full', got {scale!r}")
    folder = os.environ.get("GDM_CHECKPOINT_DIR", "").strip()
    if not folder:
        return None
    directory = Path(folder).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}-{scale}.pt"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and every GPU) random generators.

    Raises:
        TypeError: If ``seed`` is not an integer.
        ValueError: If ``seed`` is negative.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _installed_version() -> str:
    # From the package metadata, not `from gdmlib import __version__`: runtime sits below the
    # package and must not import it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gdmlib")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


def setup(seed: int = 0, *, verbose: bool = True) -> Runtime:
    """Prepare a chapter: seed everything, choose device and scale, print what was chosen.

    In quick mode on a CPU, torch is also set to one intra-op thread (see the comment in the code).

    Args:
        seed: The seed for Python, NumPy and PyTorch.
        verbose: Print the device, the library versions and the scale.

    Returns:
        The :class:`Runtime`, also remembered for :func:`pick`.
    """
    global _current
    seed_everything(seed)
    device = get_device()
    scale = get_scale(device)
    if device.type == "cpu" and scale == "quick":
        # Quick mode trains tiny networks, for which torch's thread pool costs far more than it
        # gains (10-40x slower on two cores); one thread is also what the stored outputs used.
        torch.set_num_threads(1)
    _current = Runtime(device=device, scale=scale, seed=seed)
    if verbose:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
        print(f"device: {device} ({name})")
        print(
            f"versions: python {platform.python_version()}, torch {torch.__version__}, gdmlib "
            f"{_installed_version()}"
        )
        print(f"scale: {scale} (set GDM_SCALE=quick|full to override)")
    return _current


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` progress bar: a widget in Jupyter, text in a terminal.

    Keyword arguments go to :class:`tqdm.auto.tqdm` (``total``, ``desc``, ``disable``...). Bars are
    updated at most twice a second so that stored notebook outputs stay small.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run CPU work on one torch thread, then restore the thread count.

    The book's small networks (critics, two-sample classifiers) are too small for threads to pay:
    on a loaded two-core machine their synchronisation makes training 10 to 30 times slower. Work
    on a GPU is left alone.

    Example:
        >>> with single_threaded(torch.device("cpu")):
        ...     torch.get_num_threads()
        1
    """
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
