r"""Offline image data: scikit-learn's bundled 8×8 digits, procedural sprites, MNIST on request.

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

:func:`sprites` renders dSprites-like images (shape, scale, orientation, position) on a full
factorial grid of known factors, for the disentanglement experiments of chapter 13; no download,
and no two grid points give the same image.

:func:`digits` and :func:`mnist` return a :class:`torch.utils.data.TensorDataset` of
``(images, labels)``; the tensors themselves are ``dataset.tensors``.

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
import math
import os
import shutil
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from gdmlib._checks import check_positive_int as _check_positive_int

__all__ = ["DIGITS_LEVELS", "SPRITE_FACTORS", "Sprites", "digits", "mnist", "sprites"]

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


# ---------------------------------------------------------------------------------------------
# Procedural sprites with known factors (chapter 13)
# ---------------------------------------------------------------------------------------------

SPRITE_FACTORS = ("shape", "scale", "orientation", "x", "y")
"""The names of the five factors of :func:`sprites`, in the order of the columns of factors."""

# Geometry in units of the image width: a sprite of scale s has "radius" _SPRITE_RADIUS * s, and its
# centre moves on [_SPRITE_MARGIN, 1 - _SPRITE_MARGIN] along each axis.
_SPRITE_RADIUS = 0.2
_SPRITE_MARGIN = 0.28


class Sprites(NamedTuple):
    """The sprites data set: a full factorial grid of factors and one image per grid point.

    Attributes:
        images: Grey levels in :math:`[0, 1]`, shape ``(N, R, R)``, ``N = prod(sizes)``.
        factors: The factor values (integer indices), shape ``(N, 5)``, dtype ``int64``, columns
            :data:`SPRITE_FACTORS`; row ``n`` is ``numpy.unravel_index(n, sizes)`` (the last
            factor varies fastest).
        sizes: The number of values of each factor.
    """

    images: torch.Tensor
    factors: torch.Tensor
    sizes: tuple[int, ...]


def _sprite_mask(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-indicator of the three shapes at sprite coordinates (u, v) (radius 1)."""
    square = torch.maximum(u.abs(), v.abs()) <= 1
    ellipse = u.square() + (v / 0.6).square() <= 1
    # The heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.14, 1.14], y in [-1, 1.25]; shrink
    # it to fit the unit radius and centre it vertically.
    hx, hy = 1.1 * u, -1.1 * v + 0.12
    heart = (hx.square() + hy.square() - 1).pow(3) - hx.square() * hy.pow(3) <= 0
    return torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))


def sprites(
    sizes: tuple[int, ...] = (3, 3, 4, 8, 8),
    resolution: int = 16,
    antialias: int = 4,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    chunk_size: int = 4096,
) -> Sprites:
    r"""Procedural dSprites-like images with five known factors, rendered in torch (no download).

    Every combination of the factors (a full factorial grid, like dSprites and
    ``disentanglement_lib``'s ``dsprites_full``) gives one image:

    - **shape** (at most 3): square :math:`\max(|u|, |v|) \le 1`, ellipse
      :math:`u^2 + (v / 0.6)^2 \le 1`, heart :math:`(x^2 + y^2 - 1)^3 - x^2 y^3 \le 0`;
    - **scale**: the radius is :math:`0.2\,s` of the image width, :math:`s` in
      ``linspace(0.5, 1, sizes[1])``;
    - **orientation** :math:`\theta` in ``[0°, 90°)`` (``sizes[2]`` equal steps): a square repeats
      every 90° and an ellipse every 180°, so dSprites' range of 360° makes different factors draw
      the same image; here no two grid points do;
    - **x, y**: the centre, on ``linspace(0.28, 0.72, sizes[3 or 4])`` of the width and height.

    :math:`(u, v)` are the pixel coordinates relative to the centre, rotated by :math:`-\theta` and
    divided by the radius. Each pixel is the fraction of ``antialias × antialias`` sub-pixel centres
    inside the shape (supersampling and average pooling): grey levels make the rendering
    **injective** where binary pixels are not (at 16×16, binary pixels give 2,011 distinct images
    for the default sizes, anti-aliased ones all 2,304; a test asserts it).

    Args:
        sizes: Values per factor (shape, scale, orientation, x, y); at most 3 shapes.
        resolution: Image side in pixels.
        antialias: Sub-pixels per pixel side (1 renders binary images).
        device: Where the tensors live (the CPU when ``None``); rendering runs there.
        dtype: Floating dtype of the images (``torch.float32`` by default).
        chunk_size: Images rendered at a time (bounds the memory of the supersampled grid).

    Returns:
        A :class:`Sprites` ``(images, factors, sizes)``.

    Raises:
        TypeError: On non-integer sizes, resolution, antialias or chunk size, or a bad dtype.
        ValueError: On a sizes tuple that is not five positive ints, more than 3 shapes, or an
            unknown device.

    Example:
        >>> data = sprites()
        >>> tuple(data.images.shape), tuple(data.factors.shape), data.sizes
        ((2304, 16, 16), (2304, 5), (3, 3, 4, 8, 8))
        >>> float(data.images.min()), float(data.images.max())
        (0.0, 1.0)
        >>> data.factors[9].tolist()  # row n = numpy.unravel_index(n, sizes)
        [0, 0, 0, 1, 1]

    References:
        Matthey, Higgins, Hassabis & Lerchner (2017). dSprites: disentanglement testing sprites
        dataset. https://github.com/deepmind/dsprites-dataset

        Locatello et al. (2019). Challenging common assumptions in the unsupervised learning of
        disentangled representations. ICML (``disentanglement_lib``).
    """
    if not isinstance(sizes, (tuple, list)) or len(sizes) != len(SPRITE_FACTORS):
        raise ValueError(
            f"sizes must be a tuple of 5 ints (shape, scale, orientation, x, y), got {sizes!r}"
        )
    sizes = tuple(_check_positive_int(f"sizes[{i}]", size) for i, size in enumerate(sizes))
    if sizes[0] > 3:
        raise ValueError(
            f"sizes[0] (shapes) must be at most 3 (square, ellipse, heart), got {sizes[0]}"
        )
    resolution = _check_positive_int("resolution", resolution)
    antialias = _check_positive_int("antialias", antialias)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    device = _check_device(device)
    dtype = _image_dtype(dtype, levels=False)

    count = math.prod(sizes)
    grids = torch.meshgrid(*(torch.arange(size, device=device) for size in sizes), indexing="ij")
    factors = torch.stack([grid.reshape(-1) for grid in grids], dim=1)

    def steps(size: int, low: float, high: float) -> torch.Tensor:
        if size == 1:
            return torch.tensor([(low + high) / 2], dtype=torch.float64, device=device)
        return torch.linspace(low, high, size, dtype=torch.float64, device=device)

    scales = steps(sizes[1], 0.5, 1.0) * _SPRITE_RADIUS
    angles = torch.arange(sizes[2], dtype=torch.float64, device=device) * (math.pi / 2 / sizes[2])
    xs = steps(sizes[3], _SPRITE_MARGIN, 1 - _SPRITE_MARGIN)
    ys = steps(sizes[4], _SPRITE_MARGIN, 1 - _SPRITE_MARGIN)
    fine = resolution * antialias
    centres = (torch.arange(fine, dtype=torch.float64, device=device) + 0.5) / fine
    row, col = centres.view(1, fine, 1), centres.view(1, 1, fine)

    images = torch.empty(count, resolution, resolution, dtype=dtype, device=device)
    for start in range(0, count, chunk_size):
        block = factors[start : start + chunk_size]
        shape = block[:, 0].view(-1, 1, 1)
        radius = scales[block[:, 1]].view(-1, 1, 1)
        angle = angles[block[:, 2]].view(-1, 1, 1)
        dx, dy = col - xs[block[:, 3]].view(-1, 1, 1), row - ys[block[:, 4]].view(-1, 1, 1)
        cos, sin = angle.cos(), angle.sin()
        u = (cos * dx + sin * dy) / radius
        v = (-sin * dx + cos * dy) / radius
        inside = _sprite_mask(shape, u, v).to(torch.float64)
        pooled = inside.view(-1, resolution, antialias, resolution, antialias).mean((2, 4))
        images[start : start + chunk_size] = pooled.to(dtype)
    return Sprites(images, factors, sizes)
