r"""Lipschitz constraints for critics: gradient penalties, weight clipping, input-gradient norms.

A Wasserstein critic must stay (close to) 1-Lipschitz for its gap
:math:`\mathbb{E}_P f - \mathbb{E}_Q f` to bound :math:`W_1(P, Q)` (Kantorovich–Rubinstein). The
tools shared by the GAN training loop (:mod:`gdmlib.gan`) and the critics of :mod:`gdmlib.critics`:

- :func:`gradient_penalty` — WGAN-GP's
  :math:`\mathbb{E}_{\hat x}(\lVert\nabla f(\hat x)\rVert_2 - 1)^2` on random interpolates
  (Gulrajani et al. 2017), and :func:`batched_gradient_penalty`, the same for every member of a
  batched critic (:class:`gdmlib.nets.BatchedMLP`);
- :func:`clip_weights` — the original WGAN's clamp of every parameter to :math:`[-c, c]`
  (Arjovsky et al. 2017);
- :func:`gradient_norms` — :math:`\lVert\nabla f(z_k)\rVert_2` at given points, whose maximum is an
  empirical Lipschitz constant.

Used by chapters 07 and 08 (through :mod:`gdmlib.critics` and :mod:`gdmlib.gan`).

Device and dtype: the data must be floating tensors of one dtype on one device, and a critic that
is an ``nn.Module`` must hold its floating parameters on that device with that dtype; a mismatch is
refused with a ``ValueError`` (device) or ``TypeError`` (dtype) naming both, instead of the raw
error of the first matrix product.

References:
    Arjovsky, Chintala, Bottou. Wasserstein generative adversarial networks. ICML 2017.

    Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
    NeurIPS 2017.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["batched_gradient_penalty", "clip_weights", "gradient_norms", "gradient_penalty"]


def _check_pair(real: object, fake: object) -> None:
    """``real`` and ``fake``: floating tensors of one shape, dtype and device."""
    for name, tensor in (("real", real), ("fake", fake)):
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            kind = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {kind}")
    assert isinstance(real, Tensor) and isinstance(fake, Tensor)
    if real.shape != fake.shape:
        raise ValueError(
            "real and fake must have the same shape, "
            f"got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.dtype != fake.dtype:
        raise TypeError(
            f"real and fake must have the same dtype, got {real.dtype} and {fake.dtype}"
        )
    if real.device != fake.device:
        raise ValueError(
            f"real and fake must be on the same device, got {real.device} and {fake.device}"
        )


def _check_critic_matches(critic: object, data: Tensor, name: str) -> None:
    """A module critic's first floating parameter must share ``data``'s device and dtype."""
    if not isinstance(critic, nn.Module):
        return  # a plain function: nothing to compare
    parameter = next((p for p in critic.parameters() if p.is_floating_point()), None)
    if parameter is None:
        return
    if parameter.device != data.device:
        raise ValueError(
            f"the critic's parameters are on {parameter.device} but {name} is on {data.device}; "
            f"move one of them, e.g. critic.to({str(data.device)!r})"
        )
    if parameter.dtype != data.dtype:
        raise TypeError(
            f"the critic's parameters are {parameter.dtype} but {name} is {data.dtype}; "
            f"convert one of them, e.g. critic.to({data.dtype})"
        )


def _scores(critic: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    """The critic's scores of ``points``, one per point, as a vector ``(N,)``."""
    scores = critic(points)
    if not isinstance(scores, Tensor) or scores.numel() != points.shape[0]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(
            f"critic must return one score per point, shape (N,) or (N, 1), got {shape}"
        )
    return scores.reshape(-1)


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
    *,
    weights: Tensor | None = None,
) -> Tensor:
    r"""The WGAN-GP gradient penalty
    :math:`\mathbb{E}_{\hat x}(\|\nabla_{\hat x} f(\hat x)\|_2 - 1)^2`.

    For each sample :math:`i` one weight :math:`\epsilon_i \sim U[0, 1]` is drawn and
    :math:`\hat x_i = \epsilon_i x_i + (1 - \epsilon_i)\tilde x_i` lies on the segment between the
    data point :math:`x_i` and the generated point :math:`\tilde x_i`; the same :math:`\epsilon_i`
    multiplies every coordinate (pixel, channel) of the sample. The gradient norm is taken over
    all non-batch dimensions together (the sample flattened), and the result is averaged over the
    batch. It is *unweighted*: the critic's loss adds :math:`\lambda` times it (:math:`\lambda = 10`
    in the paper). The gradient is built with ``create_graph=True`` so that the penalty can be
    back-propagated into the critic's parameters. ``real`` and ``fake`` are detached: the penalty
    trains the critic only.

    The critic must score each sample independently (no batch normalisation), otherwise the
    per-sample gradients mix samples.

    Args:
        critic: Maps a batch ``(N, ...)`` to scores of shape ``(N,)`` or ``(N, 1)``.
        real: Data batch ``(N, ...)``.
        fake: Generated batch of the same shape, dtype and device.
        generator: A ``torch.Generator`` for the interpolation weights (the global generator when
            ``None``). A CPU generator may serve CUDA inputs: the weights are drawn on the
            generator's device and moved.
        weights: The interpolation weights themselves, shape ``(N,)`` or ``(N, 1, ..., 1)``, in
            :math:`[0, 1]`; overrides ``generator``.

    Returns:
        A scalar tensor.

    Raises:
        TypeError: If ``real`` or ``fake`` is not a floating tensor, their dtypes differ, or the
            critic's parameters have another dtype than the data (float64 data, float32 critic).
        ValueError: On mismatched shapes or devices, a critic whose parameters lie on another device
            than the data, weights outside :math:`[0, 1]`, or a critic that does not return one
            score per sample.

    References:
        Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
        NeurIPS 2017, algorithm 1.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> critic = torch.nn.Linear(4, 1, bias=False)  # gradient w everywhere
        >>> with torch.no_grad():
        ...     _ = critic.weight.copy_(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
        >>> round(gradient_penalty(critic, torch.randn(8, 4), torch.randn(8, 4)).item(), 4)
        1.0
    """
    _check_pair(real, fake)
    if real.ndim < 1 or real.shape[0] == 0:
        raise ValueError(
            f"real and fake must be non-empty batches of shape (N, ...), got {tuple(real.shape)}"
        )
    if not callable(critic):
        raise TypeError(f"critic must be callable (e.g. an nn.Module), got {type(critic).__name__}")
    _check_critic_matches(critic, real, "real")
    batch = real.shape[0]
    broadcast_shape = (batch,) + (1,) * (real.ndim - 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if weights is None:
        draw_device = generator.device if generator is not None else real.device
        weights = torch.rand(batch, generator=generator, device=draw_device, dtype=real.dtype)
        weights = weights.to(real.device)
    else:
        if not isinstance(weights, Tensor):
            raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
        if weights.numel() != batch or weights.shape[0] != batch:
            raise ValueError(
                f"weights must hold one weight per sample, shape ({batch},) or {broadcast_shape}, "
                f"got {tuple(weights.shape)}"
            )
        if not bool(((weights >= 0) & (weights <= 1)).all()):  # NaN fails both comparisons
            raise ValueError("weights must lie in [0, 1] (no NaN)")
        weights = weights.to(device=real.device, dtype=real.dtype)
    weights = weights.reshape(broadcast_shape)
    interpolates = (weights * real.detach() + (1 - weights) * fake.detach()).requires_grad_(True)
    scores = critic(interpolates)
    if not isinstance(scores, Tensor) or scores.shape[0] != batch or scores.numel() != batch:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(
            f"critic must return one score per sample, shape ({batch},) or ({batch}, 1), "
            f"got {shape}"
        )
    (gradients,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    norms = gradients.flatten(start_dim=1).norm(dim=1)
    return ((norms - 1) ** 2).mean()


def batched_gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The gradient penalty of :func:`gradient_penalty` for a batched critic, member by member.

    For inputs of shape ``(members, N, d)`` and a critic that maps them to ``(members, N, 1)``
    (e.g. :class:`gdmlib.nets.BatchedMLP`), it returns

    .. math::
        \frac{1}{M} \sum_{k=1}^{M} \frac1N \sum_{i=1}^{N}
        \bigl(\lVert \nabla_{\hat x} f_k(\hat x_{ki}) \rVert_2 - 1\bigr)^2,
        \qquad \hat x_{ki} = \epsilon_{ki} x_{ki} + (1 - \epsilon_{ki}) \tilde x_{ki},

    one weight :math:`\epsilon_{ki} \sim U[0, 1]` per sample: the mean over the members of each
    member's own penalty, which is what :func:`~gdmlib.gan.losses.critic_loss_wasserstein` (a mean
    over members too) needs so that :func:`~gdmlib.gan.training.train_adversarial` trains every
    member as a WGAN-GP of its own. Pass it as ``penalty=batched_gradient_penalty``.

    Args:
        critic: Maps ``(members, N, d)`` to ``(members, N)`` or ``(members, N, 1)`` scores, each
            score depending on its own sample only.
        real: Data, shape ``(members, N, d)``.
        fake: Generated samples of the same shape, dtype and device.
        generator: A ``torch.Generator`` for the interpolation weights (see
            :func:`gradient_penalty`).

    Returns:
        A scalar tensor.

    Raises:
        TypeError: As :func:`gradient_penalty` (non-floating inputs, two dtypes, a critic of
            another dtype).
        ValueError: If the inputs do not have one shape ``(members, N, d)``, lie on another device
            than the critic, or the critic does not return one score per sample.

    References:
        Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved training of Wasserstein GANs.
        NeurIPS 2017, algorithm 1.

    Example:
        >>> import torch
        >>> from gdmlib.nets import BatchedMLP
        >>> _ = torch.manual_seed(0)
        >>> critic = BatchedMLP(3, 2, 1, hidden=(8,))
        >>> value = batched_gradient_penalty(critic, torch.randn(3, 16, 2), torch.randn(3, 16, 2))
        >>> value.shape, bool(value >= 0)
        (torch.Size([]), True)
    """
    _check_pair(real, fake)
    if real.ndim != 3:
        raise ValueError(f"real and fake must have shape (members, N, d), got {tuple(real.shape)}")
    if not callable(critic):
        raise TypeError(f"critic must be callable (e.g. an nn.Module), got {type(critic).__name__}")
    _check_critic_matches(critic, real, "real")
    members, count, dim = real.shape

    def flat_critic(points: Tensor) -> Tensor:
        scores = critic(points.reshape(members, count, dim))
        if not isinstance(scores, Tensor) or scores.numel() != members * count:
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(
                f"critic must return one score per sample, shape ({members}, {count}) or "
                f"({members}, {count}, 1), got {shape}"
            )
        return scores.reshape(-1)

    # Every member has N samples: the mean over all of them is the mean of the members' penalties.
    return gradient_penalty(flat_critic, real.reshape(-1, dim), fake.reshape(-1, dim), generator)


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> nn.Module:
    r"""Clamp every parameter of ``module`` to :math:`[-c, c]`, in place.

    The WGAN's original way to keep the critic in a set of :math:`K`-Lipschitz functions
    (for some :math:`K` that depends on :math:`c` and the architecture). Call it *after* each
    critic optimiser step.

    Args:
        module: The critic.
        c: The clipping bound (0.01 in the paper), positive.

    Returns:
        ``module`` itself.

    Raises:
        TypeError: If ``module`` is not an ``nn.Module``.
        ValueError: If ``c`` is not a positive finite number.

    References:
        Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017, algorithm 1.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(3, 3)
        >>> _ = torch.nn.init.constant_(layer.weight, 5.0)
        >>> clip_weights(layer, 0.01).weight.abs().max().item()
        0.009999999776482582
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or c <= 0:
        raise ValueError(f"the clipping bound c must be a positive finite number, got {c!r}")
    for parameter in module.parameters():
        parameter.clamp_(-c, c)
    return module


def gradient_norms(critic: nn.Module, points: Tensor) -> Tensor:
    r"""The norms :math:`\lVert \nabla f(z_k) \rVert_2` of a critic's input gradient at each point.

    Their maximum is a lower bound on the Lipschitz constant of :math:`f` (a ReLU network is
    piecewise linear, so the bound is tight when the points visit every linear piece that matters).
    The critic is evaluated in evaluation mode; its mode is restored.

    Args:
        critic: Maps ``(N, d)`` to ``(N,)`` or ``(N, 1)`` scores, each from its own input.
        points: ``(N, d)`` or ``(N,)``.

    Returns:
        ``(N,)`` norms on the points' device and dtype (detached).

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> gradient_norms(layer, torch.randn(3, 2)).tolist()
        [5.0, 5.0, 5.0]
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}")
    if not isinstance(points, Tensor) or not points.is_floating_point():
        kind = points.dtype if isinstance(points, Tensor) else type(points).__name__
        raise TypeError(f"points must be a floating-point torch.Tensor, got {kind}")
    if points.dim() not in (1, 2) or points.shape[0] == 0:
        raise ValueError(
            f"points must have shape (N, d) or (N,) with N >= 1, got {tuple(points.shape)}"
        )
    _check_critic_matches(critic, points, "points")
    if points.dim() == 1:
        points = points.unsqueeze(-1)
    was_training = critic.training
    critic.eval()
    try:
        with torch.enable_grad():
            inputs = points.detach().clone().requires_grad_(True)
            (gradients,) = torch.autograd.grad(_scores(critic, inputs).sum(), inputs)
    finally:
        critic.train(was_training)
    return gradients.norm(dim=1).detach()
