r"""Diagnostics of GAN training: the generator's gradient norm and the saturation experiment.

:func:`generator_gradient_norm` measures :math:`\lVert\nabla_\theta \mathcal{L}_G\rVert` for the
minimax and non-saturating losses; :func:`saturation_curve` trains the discriminator alone against
a frozen generator and records both, the experiment of Arjovsky & Bottou (2017, figure 2): the
minimax gradient vanishes as the discriminator improves, the non-saturating one does not. Both
work on batched networks (:class:`gdmlib.nets.BatchedMLP`), one value per member. Used by chapter
04.

References:
    Goodfellow et al. Generative adversarial nets. NeurIPS 2014, section 3.

    Arjovsky, Bottou. Towards principled methods for training generative adversarial networks.
    ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from gdmlib import runtime
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.gan.losses import GeneratorLossKind, discriminator_loss, generator_loss
from gdmlib.training import check_finite_parameters, finite_loss

__all__ = ["SaturationCurve", "generator_gradient_norm", "saturation_curve"]


def _check_module(name: str, module: object) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    return module


def _check_same_device_as(module: nn.Module, tensor: torch.Tensor, name: str) -> None:
    parameter = next(iter(module.parameters()), None)
    if parameter is not None and parameter.device != tensor.device:
        raise ValueError(
            f"{name} is on {tensor.device} but the generator's parameters are on "
            f"{parameter.device}; move one of them"
        )


def generator_gradient_norm(
    generator: nn.Module,
    critic: Callable[[torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    kind: GeneratorLossKind = "non_saturating",
    *,
    per_member: bool = False,
) -> float | list[float]:
    r"""The Euclidean norm of the gradient of the generator's loss with respect to its parameters.

    .. math::
        \bigl\lVert \nabla_\theta\, \mathcal{L}_G(\theta) \bigr\rVert_2, \qquad
        \mathcal{L}_G(\theta) = \texttt{generator\_loss}\bigl(\ell(G_\theta(z_{1:n})),
        \texttt{kind}\bigr),

    over every generator parameter that requires a gradient, all of them stacked into one vector.
    For the minimax loss the gradient is
    :math:`-\frac1n\sum_i \sigma(\ell_i)\,\nabla_\theta \ell_i`: it vanishes as the discriminator's
    confidence :math:`D(G(z_i)) = \sigma(\ell_i)` on the samples goes to 0. For the non-saturating
    loss the factor is :math:`\sigma(-\ell_i) \to 1` instead (Goodfellow et al. 2014, section 3;
    Arjovsky & Bottou 2017, section 2.2).

    The ``.grad`` fields of both networks are left untouched (``torch.autograd.grad`` is used).

    With ``per_member=True`` the generator and the critic hold :math:`M` independent members, as a
    :class:`gdmlib.nets.BatchedMLP` does: ``noise`` has shape ``(M, n, ...)``, row :math:`k` goes
    through member :math:`k`, and every trainable parameter of the generator has :math:`M` as its
    leading dimension. The loss is then :math:`\sum_k \mathcal{L}_G^{(k)}`, the sum of each member's
    own loss on its own logits, whose gradient with respect to member :math:`k`'s slice of the
    parameters is member :math:`k`'s gradient alone; the result is the list of the :math:`M` norms.

    Args:
        generator: Maps ``noise`` to samples.
        critic: Maps samples to the discriminator's logits.
        noise: A noise batch for ``generator``.
        kind: ``"non_saturating"`` or ``"minimax"`` (see :func:`generator_loss`).
        per_member: Return one norm per member of batched networks (see above).

    Returns:
        The norm, a Python float; with ``per_member=True``, a list of :math:`M` floats.

    Raises:
        TypeError: If ``generator`` is not an ``nn.Module`` or ``noise`` not a tensor.
        ValueError: If the generator has no trainable parameter, or ``kind`` is unknown; with
            ``per_member=True``, if ``noise`` has fewer than 2 dimensions, or a trainable parameter
            or the critic's output does not have ``noise``'s leading size :math:`M`.

    References:
        Arjovsky, Bottou. Towards principled methods for training generative adversarial
        networks. ICLR 2017, theorem 2.4 and figure 2.

    Example:
        >>> import torch
        >>> generator = torch.nn.Linear(1, 1)
        >>> with torch.no_grad():
        ...     _ = generator.weight.fill_(1.0), generator.bias.fill_(0.0)
        >>> confident = lambda x: -20.0 - x.squeeze(-1)  # D(G(z)) = sigmoid(-20 - G(z)) ≈ 0
        >>> z = torch.zeros(4, 1)  # so the gradient only has a bias component, of size sigma(-l)
        >>> # sigma(-20) = 2e-9
        >>> round(generator_gradient_norm(generator, confident, z, "minimax"), 6)
        0.0
        >>> round(generator_gradient_norm(generator, confident, z), 6)
        1.0

        Three independent members at once: one norm each.

        >>> from gdmlib.nets import BatchedMLP
        >>> _ = torch.manual_seed(0)
        >>> batched_generator = BatchedMLP(3, 2, 2, hidden=(8,))
        >>> batched_critic = BatchedMLP(3, 2, 1, hidden=(8,))
        >>> norms = generator_gradient_norm(
        ...     batched_generator, batched_critic, torch.randn(3, 16, 2), per_member=True
        ... )
        >>> len(norms), all(norm > 0 for norm in norms)
        (3, True)
    """
    _check_module("generator", generator)
    if not callable(critic):
        raise TypeError(f"critic must be callable (e.g. an nn.Module), got {type(critic).__name__}")
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
    _check_same_device_as(generator, noise, "noise")
    if not isinstance(per_member, bool):
        raise TypeError(f"per_member must be a bool, got {type(per_member).__name__}")
    parameters = [parameter for parameter in generator.parameters() if parameter.requires_grad]
    if not parameters:
        raise ValueError("the generator has no parameter that requires a gradient")
    if not per_member:
        loss = generator_loss(critic(generator(noise)), kind)
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        squares = [
            gradient.detach().double().square().sum()
            for gradient in gradients
            if gradient is not None
        ]
        return float(torch.stack(squares).sum().sqrt()) if squares else 0.0

    if noise.dim() < 2:
        raise ValueError(
            "with per_member=True, noise must have shape (members, n, ...), got "
            f"{tuple(noise.shape)}"
        )
    members = noise.shape[0]
    for parameter in parameters:
        if parameter.dim() == 0 or parameter.shape[0] != members:
            raise ValueError(
                "with per_member=True, every trainable generator parameter must have the "
                f"{members} members as its leading dimension, got one of shape "
                f"{tuple(parameter.shape)}"
            )
    logits = critic(generator(noise))
    if not isinstance(logits, torch.Tensor) or logits.dim() < 2 or logits.shape[0] != members:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"with per_member=True, the critic must return logits of shape ({members}, n, ...), "
            f"got {shape}"
        )
    # The sum of the members' own losses: member k's slice of the gradient is member k's gradient.
    loss = sum(generator_loss(logits[k], kind) for k in range(members))
    gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
    squares = torch.zeros(members, dtype=torch.float64, device=noise.device)
    for gradient in gradients:
        if gradient is not None:
            squares = squares + gradient.detach().double().reshape(members, -1).square().sum(
                dim=1
            ).to(squares.device)
    return squares.sqrt().tolist()


@dataclass
class SaturationCurve:
    r"""What :func:`saturation_curve` records, one entry per recorded discriminator step.

    With ``per_member=True`` every entry of ``minimax``, ``non_saturating`` and
    ``fake_probability`` is a list with one value per member (so ``np.array(curve.minimax)`` has
    shape ``(records, members)``).

    Attributes:
        step: The number of discriminator updates made so far (0: the untrained discriminator).
        minimax: :math:`\lVert\nabla_\theta\mathcal{L}_G\rVert` for the minimax loss.
        non_saturating: The same for the non-saturating loss.
        fake_probability: The mean of :math:`D(G(z))` over the evaluation noise: the probability the
            discriminator gives to generated samples being data.
    """

    step: list[int] = field(default_factory=list)
    minimax: list[float] | list[list[float]] = field(default_factory=list)
    non_saturating: list[float] | list[list[float]] = field(default_factory=list)
    fake_probability: list[float] | list[list[float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)


def saturation_curve(
    generator: nn.Module,
    critic: nn.Module,
    sample_real: Callable[[], torch.Tensor],
    sample_noise: Callable[[], torch.Tensor],
    eval_noise: torch.Tensor,
    *,
    steps: int,
    d_opt: torch.optim.Optimizer,
    record_every: int = 10,
    progress: bool = False,
    per_member: bool = False,
) -> SaturationCurve:
    r"""Train the discriminator alone against a frozen generator; record the generator's gradients.

    The experiment of Arjovsky & Bottou (2017, figure 2): the generator :math:`G_\theta` is held
    fixed while the discriminator minimises :func:`discriminator_loss` for ``steps`` updates of
    ``d_opt``. Before the first update and every ``record_every`` updates (and after the last one),
    :func:`generator_gradient_norm` is evaluated on ``eval_noise`` for both generator losses. As the
    discriminator approaches :math:`D^*`, :math:`D(G(z)) \to 0` where the data has no mass, the
    minimax gradient :math:`-\mathbb{E}\,\sigma(\ell)\nabla_\theta\ell` vanishes, while the
    non-saturating one :math:`-\mathbb{E}\,\sigma(-\ell)\nabla_\theta\ell` does not.

    With ``per_member=True`` the generator and the discriminator are batched networks of :math:`M`
    independent members (:class:`gdmlib.nets.BatchedMLP`; batches of shape ``(M, n, ...)``): the
    discriminator's loss averages over the members, which Adam makes equivalent to training each
    member alone, and every record holds one value per member (see
    :func:`generator_gradient_norm`): :math:`M` runs of the experiment for about the price of one.

    Args:
        generator: The generator, never updated (its parameters' ``.grad`` are left untouched).
        critic: The discriminator (logits), trained in place.
        sample_real: Returns a data batch, on the models' device.
        sample_noise: Returns a noise batch for the discriminator's updates.
        eval_noise: A fixed noise batch on which the gradients are measured.
        steps: Number of discriminator updates, :math:`\ge 0`.
        d_opt: Optimiser over the discriminator's parameters.
        record_every: Record every this many updates.
        progress: Show a progress bar.
        per_member: Record each member of batched networks separately (see above).

    Returns:
        The :class:`SaturationCurve`.

    Raises:
        TypeError, ValueError: On invalid arguments.

    References:
        Arjovsky, Bottou. Towards principled methods for training generative adversarial
        networks. ICLR 2017, section 2.2.

    Example:
        >>> import torch
        >>> from gdmlib.nets import MLP
        >>> _ = torch.manual_seed(0)
        >>> generator, critic = torch.nn.Linear(1, 1), MLP(1, 1, hidden=(16,))
        >>> curve = saturation_curve(
        ...     generator, critic,
        ...     lambda: 4.0 + 0.1 * torch.randn(64, 1), lambda: torch.randn(64, 1),
        ...     torch.randn(256, 1), steps=150, record_every=75,
        ...     d_opt=torch.optim.Adam(critic.parameters(), lr=3e-2))
        >>> curve.step, curve.fake_probability[-1] < 0.01
        ([0, 75, 150], True)
        >>> (
        ...     curve.minimax[-1] < curve.minimax[0] / 10,
        ...     curve.non_saturating[-1] > 10 * curve.non_saturating[0],
        ... )
        (True, True)
    """
    _check_module("generator", generator)
    _check_module("critic", critic)
    for name, sampler in (("sample_real", sample_real), ("sample_noise", sample_noise)):
        if not callable(sampler):
            raise TypeError(
                f"{name} must be a callable returning a batch, got {type(sampler).__name__}"
            )
    if not isinstance(eval_noise, torch.Tensor):
        raise TypeError(f"eval_noise must be a torch.Tensor, got {type(eval_noise).__name__}")
    _check_same_device_as(generator, eval_noise, "eval_noise")
    if not isinstance(d_opt, torch.optim.Optimizer):
        raise TypeError(f"d_opt must be a torch.optim.Optimizer, got {type(d_opt).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    record_every = _check_positive_int("record_every", record_every)
    if not isinstance(per_member, bool):
        raise TypeError(f"per_member must be a bool, got {type(per_member).__name__}")

    curve = SaturationCurve()

    def record(step: int) -> None:
        curve.step.append(step)
        for kind, values in (("minimax", curve.minimax), ("non_saturating", curve.non_saturating)):
            values.append(
                generator_gradient_norm(generator, critic, eval_noise, kind, per_member=per_member)
            )
        with torch.no_grad():
            probabilities = torch.sigmoid(critic(generator(eval_noise)))
        if per_member:
            curve.fake_probability.append(
                probabilities.reshape(eval_noise.shape[0], -1).double().mean(dim=1).tolist()
            )
        else:
            curve.fake_probability.append(float(probabilities.mean()))

    record(0)
    bar = runtime.progress(total=steps, disable=not progress, desc="discriminator")
    try:
        for step in range(1, steps + 1):
            with torch.no_grad():
                fake = generator(sample_noise())
            loss = discriminator_loss(critic(sample_real()), critic(fake))
            finite_loss(loss, step - 1, "critic")
            d_opt.zero_grad(set_to_none=True)
            loss.backward()
            d_opt.step()
            check_finite_parameters(critic, step - 1)
            if step % record_every == 0 or step == steps:
                record(step)
            bar.update(1)
    finally:
        bar.close()
    return curve
