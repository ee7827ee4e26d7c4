r"""PacGAN: a discriminator that judges packs of samples, the remedy for mode collapse.

:func:`pack_samples` concatenates groups of :math:`m` samples and :class:`PackedDiscriminator`
applies a discriminator to the packs, so that it compares :math:`\pi^{\otimes m}` with
:math:`p^{\otimes m}` (Lin et al. 2018). Used by chapter 04.

References:
    Lin, Khetan, Fanti, Oh. PacGAN: the power of two samples in generative adversarial networks.
    NeurIPS 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from gdmlib._checks import check_positive_int as _check_positive_int

__all__ = ["PackedDiscriminator", "pack_samples"]


def _check_module(name: str, module: object) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    return module


def pack_samples(samples: torch.Tensor, pack: int) -> torch.Tensor:
    r"""Concatenate consecutive groups of ``pack`` samples: ``(..., N, d)`` → ``(..., N / pack,
    pack·d)``.

    Row :math:`j` of the result is :math:`(x_{jm+1}, \dots, x_{jm+m})` for :math:`m` = ``pack``,
    the input of a PacGAN discriminator (Lin et al. 2018). Samples drawn independently give packs
    of :math:`m` independent samples.

    Args:
        samples: A batch of shape ``(..., N, d)`` (leading dimensions, e.g. independent runs, are
            kept), with :math:`N` divisible by ``pack``.
        pack: The packing degree :math:`m \ge 1` (1 returns ``samples`` unchanged).

    Raises:
        TypeError: If ``samples`` is not a tensor or ``pack`` not an int.
        ValueError: If ``samples`` has fewer than two dimensions, ``pack < 1`` or :math:`N` is not
            divisible by ``pack``.

    Example:
        >>> import torch
        >>> pack_samples(torch.arange(12.0).reshape(6, 2), 3).tolist()
        [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]
    """
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    pack = _check_positive_int("pack", pack)
    if samples.ndim < 2:
        raise ValueError(f"samples must have shape (..., N, d), got {tuple(samples.shape)}")
    *leading, count, dim = samples.shape
    if count % pack:
        raise ValueError(f"the number of samples N = {count} must be divisible by pack = {pack}")
    return samples.reshape(*leading, count // pack, pack * dim)


class PackedDiscriminator(nn.Module):
    r"""PacGAN's discriminator: it judges ``pack`` samples at once.

    .. math::
        D_m(x^{(1)}, \dots, x^{(m)}) = D\bigl([x^{(1)}, \dots, x^{(m)}]\bigr),

    the wrapped discriminator applied to the concatenation of :math:`m` samples
    (:func:`pack_samples`). The generator and the losses are unchanged.
    :func:`~gdmlib.gan.training.train_adversarial`
    draws the real and the generated batches separately, so every pack holds only data or only
    generated samples, as in the paper; a batch of :math:`N` samples gives :math:`N/m` logits, so
    draw :math:`m` times more samples to keep the number of discriminator examples.

    The packed discriminator compares the product distributions :math:`\pi^{\otimes m}` and
    :math:`p^{\otimes m}`: at its optimum the game's value is
    :math:`2\,\mathrm{JSD}(\pi^{\otimes m}, p^{\otimes m}) - \log 4`. A generator that drops modes
    has a total variation to :math:`\pi` that packing amplifies
    (:math:`\mathrm{TV}(\pi^{\otimes m}, p^{\otimes m})` grows towards 1 with :math:`m`, and faster
    for a mode-collapsed :math:`p` than for a close but diverse one), which is what penalises mode
    collapse (Lin et al. 2018, section 3).

    Args:
        critic: A discriminator whose input has ``pack · d`` features in its last dimension, e.g.
            ``MLP(pack * d, 1)`` or ``nets.BatchedMLP(runs, pack * d, 1)``.
        pack: The packing degree :math:`m \ge 1`; 1 is the usual discriminator.

    Raises:
        TypeError: If ``critic`` is not an ``nn.Module`` or ``pack`` not an int.
        ValueError: If ``pack < 1``.

    References:
        Lin, Khetan, Fanti, Oh. PacGAN: the power of two samples in generative adversarial
        networks. NeurIPS 2018.

    Example:
        >>> import torch
        >>> from gdmlib.nets import MLP
        >>> critic = PackedDiscriminator(MLP(2 * 2, 1, hidden=(8,)), pack=2)
        >>> critic(torch.randn(10, 2)).shape  # 10 samples in 2-D, 5 packs of 2
        torch.Size([5, 1])
    """

    def __init__(self, critic: nn.Module, pack: int) -> None:
        super().__init__()
        self.critic = _check_module("critic", critic)
        self.pack = _check_positive_int("pack", pack)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """The logits of the packs of ``samples`` (shape ``(..., N, d)``): shape ``(..., N / pack,
        out)``."""
        return self.critic(pack_samples(samples, self.pack))

    def extra_repr(self) -> str:
        return f"pack={self.pack}"
