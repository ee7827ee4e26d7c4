r"""Offline image data: scikit-learn's bundled 8×8 digits, and MNIST on request.

The book's image experiments run on :func:`digits`: the 1797 handwritten digits (UCI optical
recognition of handwritten digits, 8×8 pixels, 17 grey levels, ten classes) that ship inside
scikit-learn, so nothing is downloaded and every run sees the same data. Each pixel is a count
:math:`v \in \{0, \dots, 16\}`, the number of "on" cells in a 4×4 block of the original 32×32
bitmap. The images come in three forms:

- intensities :math:`v / 16 \in [0, 1]` (the default), for Gaussian or Bernoulli-mean decoders;
- binary pixels :math:`\mathbb{1}[v / 16 \ge 1/2]` (``binarize=True``), for Bernoulli likelihoods;
- the raw integer levels :math:`v` (``levels=True``), for a categorical decoder over 17 values.

:func:`mnist` reads MNIST's original IDX files from a folder and downloads them only when asked
(``download=True``); chapters use it only as an opt-in, never by default.

Both return a :class:`torch.utils.data.TensorDataset` of ``(images, labels)``; the tensors
themselves are ``dataset.tensors``.

Example:
    >>> images, labels = digits().tensors
    >>> tuple(images.shape), images.dtype, float(images.max()), labels[:5].tolist()
    ((1797, 1, 8, 8), torch.float32, 1.0, [0, 1, 2, 3, 4])
    >>> levels, _ = digits(levels=True).tensors
    >>> bool(((levels / 16) == images).all())
    True

References:
    Alpaydin & Kaynak (1998). Optical recognition of handwritten digits. UCI Machine Learning
    Repository.

    LeCun, Bottou, Bengio & Haffner (1998). Gradient-based learning applied to document
    recognition. Proceedings of the IEEE 86(11).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["DIGITS_LEVELS", "digits", "mnist"]

DIGITS_LEVELS = 17
"""The number of grey levels of :func:`digits` (pixel values 0, ..., 16)."""

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# (file name, MD5 of the .gz file), as published with torchvision's MNIST.
_MNIST_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}


def _check_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (torch.device, str)):
        raise TypeError(
            f"device must be a torch.device, a string or None, got {type(device).__name__}"
        )
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}") from error


def _image_dtype(dtype: torch.dtype | None, levels: bool) -> torch.dtype:
    if dtype is None:
        return torch.int64 if levels else torch.float32
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or None, got {type(dtype).__name__}")
    if levels and (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool):
        raise TypeError(
            f"levels=True returns integer grey levels: dtype must be an integer dtype, got {dtype}"
        )
    if not levels and not dtype.is_floating_point:
        raise TypeError(
            f"images in [0, 1] need a floating dtype, got {dtype} (use levels=True for integers)"
        )
    return dtype


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    levels = bunch.images.astype(np.int64)  # stored as floats holding the integers 0..16
    levels.setflags(write=False)
    labels = bunch.target.astype(np.int64)
    labels.setflags(write=False)
    return levels, labels


def digits(
    *,
    binarize: bool = False,
    levels: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> TensorDataset:
    r"""scikit-learn's 8×8 handwritten digits as a ``TensorDataset`` of (images, labels).

    All 1797 images, in the order of ``sklearn.datasets.load_digits`` (no download, no shuffling:
    split them with ``torch.utils.data.random_split`` and a seeded generator).

    Args:
        binarize: Return binary pixels :math:`\mathbb{1}[v / 16 \ge 1/2]` (``v >= 8``) instead of
            intensities :math:`v / 16`.
        levels: Return the integer grey levels :math:`v \in \{0, \dots, 16\}` (a categorical
            variable with :data:`DIGITS_LEVELS` values). Excludes ``binarize``.
        device: Where the tensors live; the CPU when ``None``.
        dtype: The images' dtype: a floating dtype (default ``torch.float32``), or an integer dtype
            (default ``torch.int64``) with ``levels=True``. Labels are always ``torch.int64``.

    Returns:
        A ``TensorDataset`` whose ``tensors`` are the images, shape ``(1797, 1, 8, 8)``, and the
        labels, shape ``(1797,)``, in ``0, ..., 9``.

    Raises:
        TypeError: If a flag is not a bool, or the dtype does not suit the chosen form.
        ValueError: If both ``binarize`` and ``levels`` are set, or the device is unknown.

    Example:
        >>> images, _ = digits(binarize=True).tensors
        >>> sorted(images.unique().tolist())
        [0.0, 1.0]
    """
    binarize, levels = _check_flag("binarize", binarize), _check_flag("levels", levels)
    if binarize and levels:
        raise ValueError(
            "binarize and levels exclude each other: choose binary pixels or grey levels"
        )
    device = _check_device(device)
    dtype = _image_dtype(dtype, levels)
    raw, labels = _digits_arrays()
    images = torch.from_numpy(raw.copy()).unsqueeze(1)
    if levels:
        images = images.to(dtype)
    elif binarize:
        images = (images >= (DIGITS_LEVELS - 1) / 2).to(dtype)
    else:
        images = images.to(dtype) / (DIGITS_LEVELS - 1)
    return TensorDataset(images.to(device), torch.from_numpy(labels.copy()).to(device))


# ---------------------------------------------------------------------------------------------
# MNIST (opt-in)
# ---------------------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (LeCun's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated or corrupt: header says shape {shape}, file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(root: Path, name: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _download_mnist(root: Path) -> None:
    target = root / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for name, md5 in _MNIST_FILES.values():
        if _find_idx(root, name) is not None:
            continue
        errors = []
        for mirror in _MNIST_MIRRORS:
            url = f"{mirror}{name}.gz"
            try:
                with (
                    urllib.request.urlopen(url, timeout=60) as response,
                    tempfile.NamedTemporaryFile(dir=target, delete=False) as partial,
                ):
                    shutil.copyfileobj(response, partial)
                digest = hashlib.md5(Path(partial.name).read_bytes()).hexdigest()
                if digest != md5:
                    os.unlink(partial.name)
                    errors.append(f"{url}: MD5 {digest} instead of {md5}")
                    continue
                os.replace(partial.name, target / f"{name}.gz")
                break
            except OSError as error:
                errors.append(f"{url}: {error}")
        else:
            raise RuntimeError(f"could not download {name}.gz: " + "; ".join(errors))


def mnist(
    root: str | os.PathLike[str],
    *,
    train: bool = True,
    download: bool = False,
    binarize: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> TensorDataset:
    r"""MNIST from its original IDX files, as a ``TensorDataset`` of (images, labels).

    The files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``, gzipped or
    not) are looked for in ``root`` and in ``root/MNIST/raw`` (torchvision's layout, so an existing
    torchvision download is reused). Nothing is downloaded unless ``download=True``, which fetches
    the missing files into ``root/MNIST/raw`` and checks their MD5 sums.

    Args:
        root: The data folder.
        train: The 60000 training images if ``True``, else the 10000 test images.
        download: Download missing files (needs a network).
        binarize: Return :math:`\mathbb{1}[v / 255 \ge 1/2]` instead of intensities :math:`v / 255`.
        device: Where the tensors live; the CPU when ``None``.
        dtype: The images' floating dtype, ``torch.float32`` by default.

    Returns:
        A ``TensorDataset`` of images, shape ``(N, 1, 28, 28)`` in :math:`[0, 1]`, and labels,
        shape ``(N,)``, ``torch.int64``.

    Raises:
        FileNotFoundError: If the files are absent and ``download`` is ``False``.
        ValueError: If a file is not a valid IDX file, or images and labels disagree in number.
        RuntimeError: If a download fails.
    """
    train, download = _check_flag("train", train), _check_flag("download", download)
    binarize = _check_flag("binarize", binarize)
    device = _check_device(device)
    dtype = _image_dtype(dtype, levels=False)
    root = Path(root)
    split = "train" if train else "test"
    names = {kind: _MNIST_FILES[(split, kind)][0] for kind in ("images", "labels")}
    if download and any(_find_idx(root, name) is None for name in names.values()):
        _download_mnist(root)
    paths = {kind: _find_idx(root, name) for kind, name in names.items()}
    missing = [names[kind] for kind, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(
            f"MNIST files {missing} not found in {root} or {root / 'MNIST' / 'raw'} (as is or "
            ".gz); pass download=True to fetch them (needs a network), or use "
            "gdmlib.data.digits(), which needs no download"
        )
    images = _read_idx(paths["images"])
    labels = _read_idx(paths["labels"])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST images and labels do not match: shapes {images.shape} and {labels.shape} "
            "(expected (N, 28, 28) and (N,))"
        )
    pixels = torch.from_numpy(images.copy()).unsqueeze(1)
    if binarize:
        pixels = (pixels >= 128).to(dtype)  # v / 255 >= 1/2
    else:
        pixels = pixels.to(dtype) / 255
    return TensorDataset(pixels.to(device), torch.from_numpy(labels.astype(np.int64)).to(device))
