r"""Adversarial variational Bayes: the KL term of an implicit encoder estimated by a discriminator.

AVB (Mescheder et al. 2017) replaces the closed-form KL of a VAE by a discriminator
:math:`T(x, z)` trained with the logistic loss to tell pairs :math:`(x, z \sim q(z \mid x))`
(label 1) from pairs :math:`(x, z \sim p(z))` (label 0). For a fixed encoder the loss is minimised
pointwise by the log density ratio (AVB, Proposition 1),

.. math::
    T^*(x, z) = \log q(z \mid x) - \log p(z),
    \qquad\text{so}\qquad
    \mathrm{KL}\bigl(q(z \mid x) \,\|\, p(z)\bigr) = \mathbb{E}_{q(z \mid x)} T^*(x, z),

and the encoder and decoder then minimise :math:`\mathbb{E}\bigl[-\log p(x \mid z) + T(x, z)\bigr]`.
:func:`adversarial_kl` is that estimator for a finite set of conditioning points :math:`x_k`
with a discriminator that is linear in the quadratic features of :math:`z` per :math:`x_k`, a family
that contains :math:`T^*` whenever :math:`q(z \mid x_k)` and :math:`p` are Gaussian: the fit is a
convex logistic regression, solved by Newton's method in float64, and the remaining error is the
discriminator's estimation error. Used in chapter 9.

References:
    Mescheder, Nowozin & Geiger (2017). Adversarial variational Bayes: unifying variational
    autoencoders and generative adversarial networks. ICML, proposition 1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gdmlib._checks import check_positive_int, check_positive_number, check_same_dtype_and_device

__all__ = ["AdversarialKL", "adversarial_kl", "quadratic_features"]


def quadratic_features(z: Tensor) -> Tensor:
    r"""The features :math:`(1, z_1, \dots, z_d, z_i z_j\ (i \le j))` of ``z`` ``(..., d)``:
    ``(..., 1 + d + d(d+1)/2)``. A Gaussian log-density ratio is linear in them.

    Example:
        >>> quadratic_features(torch.tensor([[2.0, 3.0]])).tolist()
        [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    """
    if not isinstance(z, Tensor) or not z.is_floating_point() or z.dim() < 1:
        raise TypeError(f"z must be a floating tensor of shape (..., d), got {z!r:.60}")
    rows, cols = torch.triu_indices(z.shape[-1], z.shape[-1], device=z.device)
    products = z[..., rows] * z[..., cols]
    return torch.cat([torch.ones_like(z[..., :1]), z, products], -1)


class AdversarialKL(NamedTuple):
    r"""The outcome of :func:`adversarial_kl`.

    Attributes:
        kl: :math:`\widehat{\mathrm{KL}}_k = \frac1n \sum_i T(x_k, z_{ki})` over the encoder's
            draws, shape ``(K,)``.
        stderr: The Monte Carlo standard error of that average at fixed :math:`T` (it leaves out
            the discriminator's own estimation error, usually the larger one), ``(K,)``.
        weights: :math:`T(x_k, z) = w_k \cdot \phi(z)` with :math:`\phi` =
            :func:`quadratic_features`, shape ``(K, F)``.
        iterations: Newton iterations taken.
    """

    kl: Tensor
    stderr: Tensor
    weights: Tensor
    iterations: int

    def logit(self, z: Tensor) -> Tensor:
        """:math:`T(x_k, z)` for ``z`` of shape ``(K, n, d)``: ``(K, n)``."""
        return (quadratic_features(z.to(self.weights)) * self.weights[:, None, :]).sum(-1)


def adversarial_kl(
    z_q: Tensor, z_p: Tensor, *, max_iter: int = 100, tol: float = 1e-10
) -> AdversarialKL:
    r"""AVB's estimate of :math:`\mathrm{KL}(q(z \mid x_k) \,\|\, p(z))` for :math:`K` conditioning
    points, from draws alone.

    The discriminator :math:`T(x_k, z) = w_k \cdot \phi(z)` (:func:`quadratic_features`) minimises
    AVB's logistic loss

    .. math::
        \sum_k \Bigl[\frac1n \sum_i \log\bigl(1 + e^{-T(x_k, z^q_{ki})}\bigr)
        + \frac1{n'} \sum_i \log\bigl(1 + e^{T(x_k, z^p_{ki})}\bigr)\Bigr],

    each term an average so that the optimum is the log ratio :math:`\log q(z \mid x_k) - \log
    p(z)` whatever :math:`n` and :math:`n'`. The problem is convex and separable over :math:`k`,
    and Newton's method (in float64) solves all :math:`K` at once. The estimate is the mean of
    :math:`T` over the encoder's draws.

    Args:
        z_q: Draws of the encoder, :math:`z^q_{ki} \sim q(z \mid x_k)`, shape ``(K, n, d)``.
        z_p: Draws of the prior paired with each :math:`x_k`, shape ``(K, n', d)``, same dtype
            and device.
        max_iter: Newton iterations at most.
        tol: Stop when the largest Newton step is below ``tol``.

    Returns:
        An :class:`AdversarialKL` (float64 tensors on the inputs' device).

    Raises:
        TypeError: On non-floating inputs or two dtypes.
        ValueError: On mismatched shapes or devices, fewer than 2 draws, non-finite values, or
            when Newton's method does not converge (separable classes: no finite optimum).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z_q = 1.0 + 0.5 * torch.randn(1, 20000, 1, generator=g, dtype=torch.float64)
        >>> z_p = torch.randn(1, 20000, 1, generator=g, dtype=torch.float64)
        >>> # KL(N(1, 0.25) || N(0, 1)) = (0.25 + 1 - 1 - log 0.25) / 2 = 0.818
        >>> result = adversarial_kl(z_q, z_p)
        >>> abs(float(result.kl[0]) - 0.818) < 0.05  # the discriminator's estimation error
        True

    References:
        Mescheder, Nowozin & Geiger (2017). Adversarial variational Bayes. ICML, section 3.
    """
    for name, z in (("z_q", z_q), ("z_p", z_p)):
        if not isinstance(z, Tensor) or not z.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor, got {type(z).__name__}")
        if z.dim() != 3 or z.shape[1] < 2:
            raise ValueError(
                f"{name} must have shape (K, n, d) with n >= 2 draws per point, got "
                f"{tuple(z.shape)}"
            )
        if not torch.isfinite(z).all():
            raise ValueError(f"{name} must contain only finite values")
    check_same_dtype_and_device(z_q, z_p)
    if z_q.shape[0] != z_p.shape[0] or z_q.shape[2] != z_p.shape[2]:
        raise ValueError(
            "z_q and z_p must have the same number of conditioning points K and dimension d, "
            f"got {tuple(z_q.shape)} and {tuple(z_p.shape)}"
        )
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_positive_number("tol", tol)
    phi_q = quadratic_features(z_q.detach().double())  # (K, n, F)
    phi_p = quadratic_features(z_p.detach().double())
    weights = torch.zeros(phi_q.shape[0], phi_q.shape[2], dtype=torch.float64, device=z_q.device)
    eye = torch.eye(phi_q.shape[2], dtype=torch.float64, device=z_q.device)
    for iteration in range(1, max_iter + 1):
        gradient = torch.zeros_like(weights)
        hessian = torch.zeros(
            *weights.shape, weights.shape[1], dtype=torch.float64, device=z_q.device
        )
        for phi, label in ((phi_q, 1.0), (phi_p, 0.0)):
            prob = torch.sigmoid((phi * weights[:, None, :]).sum(-1))  # (K, n)
            count = phi.shape[1]
            gradient += torch.einsum("kn,knf->kf", prob - label, phi) / count
            curvature = prob * (1 - prob) / count
            hessian += torch.einsum("kn,knf,kng->kfg", curvature, phi, phi)
        step = torch.linalg.solve(hessian + 1e-12 * eye, gradient)
        weights = weights - step
        if not torch.isfinite(weights).all():
            break
        if float(step.abs().max()) < tol:
            logits = (phi_q * weights[:, None, :]).sum(-1)
            count = logits.shape[1]
            return AdversarialKL(
                kl=logits.mean(1),
                stderr=logits.std(1) / count**0.5,
                weights=weights,
                iterations=iteration,
            )
    raise ValueError(
        f"Newton's method did not converge in {max_iter} iterations: the two samples are (nearly) "
        "separable by a quadratic, so the logistic loss has no finite minimum; draw more points"
    )
