r"""Sample-quality metrics for generative models.

:func:`mode_coverage` measures mode collapse on a mixture of :math:`K` well-separated Gaussians
with centres :math:`\mu_1, \dots, \mu_K` and a common standard deviation :math:`\sigma` (the ring
and grid benchmarks). Every sample :math:`x` is assigned to its nearest centre
:math:`k(x) = \arg\min_k \lVert x - \mu_k \rVert`. It is *high quality* when
:math:`\lVert x - \mu_{k(x)} \rVert \le 3\sigma`. Then

- ``modes``: the number of centres that are the nearest centre of at least one high-quality
  sample;
- ``high_quality``: the fraction of high-quality samples;
- ``reverse_kl``: :math:`\mathrm{KL}(\hat p \,\|\, U) = \sum_k \hat p_k \log(K \hat p_k)`, the KL
  divergence of the histogram :math:`\hat p` of high-quality samples over the modes from the uniform
  distribution :math:`U` over all :math:`K` modes (with :math:`0 \log 0 = 0`). It is 0 when the
  modes are equally populated and :math:`\log K` when every high-quality sample is in one mode.

These are the definitions of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018), whose
tables use 2500 samples. For samples from the true mixture in :math:`d` dimensions, the expected
high-quality fraction is :math:`P(\chi^2_d \le 9)`: :math:`1 - e^{-9/2} \approx 0.9889` in 2-D.

Example:
    >>> import math, torch
    >>> angles = torch.arange(8) * (2 * math.pi / 8)
    >>> centers = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    >>> g = torch.Generator().manual_seed(0)
    >>> samples = centers[torch.randint(8, (2500,), generator=g)] + 0.02 * torch.randn(
    ...     2500, 2, generator=g
    ... )
    >>> result = mode_coverage(samples, centers, std=0.02)
    >>> result.modes, round(result.high_quality, 3), round(result.reverse_kl, 3)
    (8, 0.986, 0.001)
    >>> collapsed = mode_coverage(
    ...     centers[:1] + 0.02 * torch.randn(2500, 2, generator=g), centers, std=0.02
    ... )
    >>> collapsed.modes, round(collapsed.reverse_kl, 4)  # log 8 = 2.0794
    (1, 2.0794)

References:
    Srivastava, Valkov, Russell, Gutmann & Sutton (2017). VEEGAN: Reducing mode collapse in GANs
    using implicit variational learning. NeurIPS.

    Lin, Khetan, Fanti & Oh (2018). PacGAN: The power of two samples in generative adversarial
    networks. NeurIPS.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ModeCoverage", "mode_coverage"]

# A sample is high quality when it lies within this many standard deviations of its nearest centre.
_QUALITY_RADIUS = 3.0


@dataclass(frozen=True)
class ModeCoverage:
    r"""The mode-coverage metrics of a set of samples (see the module docstring).

    Attributes:
        modes: Number of modes with at least one high-quality sample.
        high_quality: Fraction of samples within :math:`3\sigma` of their nearest centre.
        reverse_kl: :math:`\sum_k \hat p_k \log(K \hat p_k)` for the histogram :math:`\hat p` of
            high-quality samples over the :math:`K` modes; ``inf`` when there is no high-quality
            sample.
        counts: Number of high-quality samples per mode, in the order of the centres.
    """

    modes: int
    high_quality: float
    reverse_kl: float
    counts: tuple[int, ...]

    @property
    def bounded_reverse_kl(self) -> float:
        r"""``reverse_kl``, with ``inf`` (no high-quality sample) replaced by :math:`\log K`.

        :math:`\log K` is the largest finite value, that of a histogram with a single mode, so the
        replacement can only flatter a run without high-quality samples; it makes the metric
        averageable over runs (a mean with a standard error) without hiding a collapse.

        Example:
            >>> ModeCoverage(
            ...     modes=0, high_quality=0.0, reverse_kl=math.inf, counts=(0, 0, 0, 0)
            ... ).bounded_reverse_kl
            1.3862943611198906
        """
        return min(self.reverse_kl, math.log(len(self.counts)))


def mode_coverage(samples: Tensor, centers: Tensor, std: float) -> ModeCoverage:
    r"""Modes captured, fraction of high-quality samples and reverse KL of the mode histogram.

    Each sample goes to its nearest centre; it is high quality when its distance to that centre is
    at most :math:`3\sigma`. With :math:`c_k` the number of high-quality samples nearest to centre
    :math:`k` and :math:`H = \sum_k c_k`,

    .. math::
        \text{modes} = \#\{k : c_k > 0\}, \qquad
        \text{high\_quality} = \frac{H}{N}, \qquad
        \text{reverse\_kl} = \sum_{k : c_k > 0} \frac{c_k}{H} \log \frac{K c_k}{H}.

    When no sample is high quality the histogram is undefined; ``reverse_kl`` is then ``inf``, the
    limit of a generator whose mass is ever further from every mode (and ``modes`` is 0).

    Args:
        samples: Generated samples, shape ``(N, d)``, :math:`N \ge 1`.
        centers: The :math:`K` mode centres, shape ``(K, d)``, on the same device.
        std: The standard deviation :math:`\sigma > 0` of each mixture component.

    Returns:
        A :class:`ModeCoverage`.

    Raises:
        TypeError: If ``samples`` or ``centers`` is not a floating tensor, or ``std`` not a number.
        ValueError: On wrong shapes, different devices, non-finite values or ``std <= 0``.

    Example:
        >>> import torch
        >>> centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
        >>> samples = torch.tensor([[0.1, 0.0], [0.0, 0.2], [9.9, 0.0], [5.0, 5.0]])
        >>> result = mode_coverage(samples, centers, std=0.1)  # (5, 5) is far from both centres
        >>> result.modes, result.high_quality, result.counts
        (2, 0.75, (2, 1))
        >>> round(result.reverse_kl, 4)  # 2/3 log(4/3) + 1/3 log(2/3)
        0.0566
    """
    for name, points in (("samples", samples), ("centers", centers)):
        if not isinstance(points, Tensor) or not points.is_floating_point():
            raise TypeError(
                f"{name} must be a floating torch.Tensor, got {type(points).__name__}"
                + (f" of dtype {points.dtype}" if isinstance(points, Tensor) else "")
            )
        if points.dim() != 2 or points.shape[0] == 0:
            raise ValueError(
                f"{name} must have shape (count, d) with count >= 1, got {tuple(points.shape)}"
            )
    if samples.shape[1] != centers.shape[1]:
        raise ValueError(
            "samples and centers must have the same dimension d, "
            f"got {samples.shape[1]} and {centers.shape[1]}"
        )
    if samples.device != centers.device:
        raise ValueError(
            "samples and centers must be on the same device, "
            f"got {samples.device} and {centers.device}"
        )
    if isinstance(std, bool) or not isinstance(std, numbers.Real):
        raise TypeError(f"std must be a positive number, got {type(std).__name__}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a finite positive number, got {std}")
    if not (torch.isfinite(samples).all() and torch.isfinite(centers).all()):
        raise ValueError("samples and centers must contain only finite values (no NaN or inf)")

    dtype = torch.promote_types(samples.dtype, centers.dtype)
    with torch.no_grad():
        distances = torch.cdist(samples.to(dtype), centers.to(dtype))
        nearest_distance, nearest = distances.min(dim=1)
        high_quality = nearest_distance <= _QUALITY_RADIUS * std
        counts = torch.bincount(nearest[high_quality], minlength=centers.shape[0]).tolist()

    total = sum(counts)
    num_modes = len(counts)
    if total == 0:
        reverse_kl = math.inf
    else:
        # Python floats, so that a single-mode histogram gives exactly log K.
        reverse_kl = sum(
            count / total * math.log(num_modes * count / total) for count in counts if count > 0
        )
    return ModeCoverage(
        modes=sum(count > 0 for count in counts),
        high_quality=total / samples.shape[0],
        reverse_kl=reverse_kl,
        counts=tuple(counts),
    )
