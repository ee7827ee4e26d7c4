"""Tests for gdmlib.data: the bundled 8x8 digits and the opt-in MNIST reader."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from gdmlib.data import DIGITS_LEVELS, digits, mnist


def test_digits_intensities(device) -> None:
    dataset = digits(device=device)
    assert isinstance(dataset, TensorDataset) and len(dataset) == 1797
    images, labels = dataset.tensors
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert images.device.type == device.type and labels.device.type == device.type
    assert labels.dtype == torch.int64 and sorted(labels.unique().tolist()) == list(range(10))
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    reference = load_digits()
    np.testing.assert_allclose(images.cpu().numpy()[:, 0], reference.images / 16, rtol=1e-6)
    np.testing.assert_array_equal(labels.cpu().numpy(), reference.target)


def test_digits_levels_and_binary_pixels_agree_with_the_intensities() -> None:
    images, _ = digits(dtype=torch.float64).tensors
    levels, _ = digits(levels=True).tensors
    binary, _ = digits(binarize=True).tensors
    assert (
        levels.dtype == torch.int64
        and int(levels.min()) == 0
        and int(levels.max()) == DIGITS_LEVELS - 1
    )
    torch.testing.assert_close(levels.to(torch.float64) / 16, images)
    assert sorted(binary.unique().tolist()) == [0.0, 1.0]
    torch.testing.assert_close(binary, (images >= 0.5).float())
    assert digits(levels=True, dtype=torch.uint8).tensors[0].dtype == torch.uint8


def test_digits_returns_fresh_tensors() -> None:
    images, _ = digits().tensors
    images.zero_()
    assert float(digits().tensors[0].max()) == 1.0


def test_digits_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        digits(binarize=True, levels=True)
    with pytest.raises(TypeError, match="floating dtype"):
        digits(dtype=torch.int64)
    with pytest.raises(TypeError, match="integer dtype"):
        digits(levels=True, dtype=torch.float32)
    with pytest.raises(TypeError, match="binarize must be"):
        digits(binarize=1)
    with pytest.raises(ValueError, match="unknown device"):
        digits(device="gpu7")


def write_idx(path: Path, array: np.ndarray) -> None:
    """LeCun's IDX format: zero, zero, type 0x08 (unsigned byte), rank, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_files_plain_and_gzipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28))
    labels = rng.integers(0, 10, size=5)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    pixels, targets = mnist(tmp_path, train=False).tensors
    assert pixels.shape == (5, 1, 28, 28) and pixels.dtype == torch.float32
    np.testing.assert_allclose(pixels.numpy()[:, 0], images / 255, rtol=1e-6)
    np.testing.assert_array_equal(targets.numpy(), labels)
    binary, _ = mnist(tmp_path, train=False, binarize=True).tensors
    torch.testing.assert_close(binary, (pixels >= 0.5).float())


def test_mnist_never_downloads_by_default(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download=True"):
        mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_mnist_rejects_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(ValueError, match="magic number"):
        mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    with pytest.raises(ValueError, match="do not match"):
        mnist(tmp_path)


# ---------------------------------------------------------------------------------------------
# Procedural sprites (chapter 13)
# ---------------------------------------------------------------------------------------------


def test_sprites_grid_and_injectivity() -> None:
    from gdmlib.data import SPRITE_FACTORS, sprites

    data = sprites()
    n = 3 * 3 * 4 * 8 * 8
    assert data.images.shape == (n, 16, 16) and data.images.dtype == torch.float32
    assert data.factors.shape == (n, len(SPRITE_FACTORS)) and data.factors.dtype == torch.int64
    assert data.sizes == (3, 3, 4, 8, 8)
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    expected = np.stack(np.unravel_index(np.arange(n), data.sizes), axis=1)
    np.testing.assert_array_equal(data.factors.numpy(), expected)
    # every grid point draws a different image (no symmetric duplicates, no aliasing)
    assert torch.unique(data.images.reshape(n, -1), dim=0).shape[0] == n
    # binary rendering at this resolution is not injective: anti-aliasing is what makes it so
    binary = sprites(antialias=1).images.reshape(n, -1)
    assert torch.unique(binary, dim=0).shape[0] < n


def test_sprites_other_sizes_devices_and_dtypes(device) -> None:
    from gdmlib.data import sprites

    data = sprites((2, 2, 3, 4, 4), resolution=12, device=device, dtype=torch.float64, chunk_size=7)
    assert data.images.device.type == device.type and data.images.dtype == torch.float64
    reference = sprites((2, 2, 3, 4, 4), resolution=12, dtype=torch.float64)
    torch.testing.assert_close(data.images.cpu(), reference.images)
    assert torch.unique(data.images.reshape(96, -1), dim=0).shape[0] == 96


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sizes": (3, 3, 4)}, ValueError, "tuple of 5 ints"),
        ({"sizes": (4, 3, 4, 8, 8)}, ValueError, "at most 3"),
        ({"sizes": (3, 3, 0, 8, 8)}, ValueError, r"sizes\[2\]"),
        ({"sizes": (3, 3, 4.0, 8, 8)}, TypeError, r"sizes\[2\]"),
        ({"resolution": 0}, ValueError, "resolution"),
        ({"antialias": 2.5}, TypeError, "antialias"),
        ({"dtype": torch.int64}, TypeError, "floating dtype"),
        ({"device": "nowhere"}, ValueError, "unknown device"),
    ],
)
def test_sprites_rejects_bad_arguments(kwargs, error, match) -> None:
    from gdmlib.data import sprites

    with pytest.raises(error, match=match):
        sprites(**kwargs)
