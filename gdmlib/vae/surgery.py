r"""ELBO surgery: the average KL of a trained VAE split into mutual information and marginal KL; a
flow as a VAE.

:func:`elbo_surgery` splits the average KL exactly (Hoffman & Johnson 2016),

.. math::
    \frac1N \sum_{n=1}^N \mathrm{KL}\bigl(q(z \mid x_n) \,\|\, p(z)\bigr)
    = \underbrace{I_q(n; z)}_{\le \log N} + \mathrm{KL}\bigl(q(z) \,\|\, p(z)\bigr),

:func:`elbo_surgery_on_grid` computes the two terms independently, by quadrature, for a 1- or
2-dimensional latent, and :func:`flow_as_vae_elbo` is the ELBO of the Gaussian VAE that a flow
becomes with encoder noise :math:`\sigma`. Used by chapter 10.

References:
    Hoffman, Johnson. ELBO surgery: yet another way to carve up the variational evidence lower
    bound. NeurIPS Workshop on Advances in Approximate Bayesian Inference, 2016.

    Trefethen, Weideman. The exponentially convergent trapezoidal rule. SIAM Review 56(3), 2014.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gdmlib import _gaussian as gaussian
from gdmlib._checks import check_batch as _check_batch
from gdmlib._checks import check_positive_int as _check_positive_int
from gdmlib.estimate import Estimate
from gdmlib.estimate import _mean_se_tensor as _mean_se
from gdmlib.flows import Flow
from gdmlib.vae._common import LOG_2PI, _check_num_samples, _same_device
from gdmlib.vae.model import ELBO, VAE
from gdmlib.vae.posteriors import GaussianPosterior, _encode_in_chunks, gaussian_log_prob_pairwise
from gdmlib.vae.priors import AggregatePosterior, Prior, StandardNormalPrior

__all__ = ["elbo_surgery", "elbo_surgery_on_grid", "flow_as_vae_elbo"]


def _rows_jacobian(fn: Callable[[Tensor], Tensor], inputs: Tensor) -> tuple[Tensor, Tensor]:
    """``fn(inputs)`` and its per-row Jacobian ``(B, D, D)``, one backward pass per output
    feature."""
    with torch.enable_grad():
        inputs = inputs.detach().requires_grad_(True)
        out = fn(inputs)
        rows = [
            torch.autograd.grad(out[:, i].sum(), inputs, retain_graph=True)[0]
            for i in range(out.shape[1])
        ]
    return out.detach(), torch.stack(rows, dim=-2)


def flow_as_vae_elbo(
    flow: Flow,
    x: Tensor,
    sigma: float,
    *,
    num_samples: int = 10,
    generator: torch.Generator | None = None,
) -> ELBO:
    r"""The ELBO of the Gaussian VAE that a flow becomes when its encoder and decoder get noise
    :math:`\sigma`.

    With :math:`f` the flow's map (data to noise) and :math:`g = f^{-1}`, the prior
    :math:`\mathcal{N}(0, I)`, the encoder
    :math:`q_\sigma(z \mid x) = \mathcal{N}(f(x), \sigma^2 I)` and the decoder
    :math:`p_\sigma(x \mid z) = \mathcal{N}(g(z), \sigma^2 J_g(z) J_g(z)^\top)` (the encoder's noise
    pushed through the linearised decoder) define a genuine VAE. As :math:`\sigma \to 0` its
    reconstruction and KL terms both grow like :math:`D \log(1/\sigma)` while

    .. math::
        \mathcal{L}_\sigma(x) \to \log \mathcal{N}(f(x); 0, I)
        + \log\left|\det \frac{\partial f(x)}{\partial x}\right| = \log p_{\text{flow}}(x):

    a flow is the zero-noise VAE whose ELBO is its log-likelihood. For an affine :math:`f` the
    ELBO is exactly :math:`\log p_{\text{flow}}(x) - \sigma^2 D / 2` in expectation. Jacobians come
    from autograd (``D`` backward passes), so keep ``D`` small.

    Args:
        flow: An unconditional :class:`gdmlib.flows.Flow`.
        x: Points, shape ``(B, D)``.
        sigma: The noise level :math:`\sigma > 0`.
        num_samples: Draws of the encoder's noise per point.
        generator: For the draws.

    Returns:
        :class:`ELBO` with one value per point (``(B,)`` tensors, no graph), each averaged over the
        draws.

    Example:
        >>> from gdmlib.flows import realnvp
        >>> _ = torch.manual_seed(0)
        >>> flow = Flow(realnvp(2, num_layers=2, hidden=(8,))).double()
        >>> x = torch.randn(4, 2, dtype=torch.float64)
        >>> terms = flow_as_vae_elbo(flow, x, 1e-4)
        >>> bool((terms.value - flow.log_prob(x)).abs().max() < 1e-3)
        True
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a gdmlib.flows.Flow, got {type(flow).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != flow.features or x.shape[0] == 0:
        raise ValueError(
            f"x must have shape (batch, {flow.features}), got {tuple(getattr(x, 'shape', ()))}"
        )
    if not (
        isinstance(sigma, (int, float))
        and not isinstance(sigma, bool)
        and math.isfinite(sigma)
        and sigma > 0
    ):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    num_samples = _check_num_samples(num_samples)
    dim, count = flow.features, x.shape[0]
    with torch.no_grad():
        code = flow.transform(x)[0]
    eps = torch.randn(
        (num_samples, count, dim), generator=generator, device=x.device, dtype=x.dtype
    )
    z = code + sigma * eps
    mean, jacobian = _rows_jacobian(
        lambda latent: flow.transform.inverse(latent)[0], z.reshape(-1, dim)
    )
    residual = torch.linalg.solve(
        jacobian, (x.repeat(num_samples, 1) - mean).unsqueeze(-1)
    ).squeeze(-1)
    log_norm = 0.5 * dim * math.log(2 * math.pi * sigma**2)
    reconstruction = (
        -log_norm
        - torch.linalg.slogdet(jacobian).logabsdet
        - 0.5 * residual.square().sum(-1) / sigma**2
    ).reshape(num_samples, count)
    log_encoder = -0.5 * eps.square().sum(-1) - log_norm
    log_prior = -0.5 * (z.square().sum(-1) + dim * LOG_2PI)
    kl = log_encoder - log_prior
    return ELBO(
        (reconstruction - kl).mean(0).detach(), reconstruction.mean(0).detach(), kl.mean(0).detach()
    )


@torch.no_grad()
def elbo_surgery(
    model: VAE,
    data: Tensor,
    *,
    num_samples: int = 1,
    chunk_size: int = 256,
    generator: torch.Generator | None = None,
) -> dict[str, Estimate]:
    r"""ELBO surgery (Hoffman & Johnson 2016) of a trained VAE on a dataset, with standard errors.

    With :math:`n` uniform on the :math:`N` data points and :math:`z \sim q(z \mid x_n)`, the
    aggregated posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)` and the mutual information
    :math:`I_q(n; z) = \mathbb{E}\bigl[\log q(z \mid x_n) - \log q(z)\bigr]`,

    .. math::
        \underbrace{\frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \,\|\, p(z))}_{\texttt{avg\_kl}}
        = \underbrace{I_q(n; z)}_{\texttt{mutual\_info}}
        + \underbrace{\mathrm{KL}(q(z) \,\|\, p(z))}_{\texttt{marginal\_kl}},
        \qquad 0 \le I_q(n; z) \le \log N,

    and the average ELBO is ``reconstruction - avg_kl``. :math:`\log q(z)` is computed exactly, a
    logsumexp over all :math:`N` Gaussians (chunked, on the data's device); the expectations over
    :math:`z` are Monte Carlo with ``num_samples`` draws per data point. ``avg_kl`` is the closed
    form (averaged over the data, so its standard error is 0) when the prior is standard normal,
    and otherwise a Monte Carlo estimate from *independent* draws. ``identity_gap`` is
    ``avg_kl - mutual_info - marginal_kl`` with its standard error: it should be within a few
    standard errors of 0. It does not test :math:`\log q(z)`, which cancels per draw in
    ``mutual_info + marginal_kl``; for a 1- or 2-dimensional latent, :func:`elbo_surgery_on_grid`
    gives the two terms independently.

    Args:
        model: A :class:`VAE` with a :class:`GaussianPosterior`.
        data: The dataset, shape ``(N, *input_shape)``, on the model's device.
        num_samples: Draws of :math:`z` per data point.
        chunk_size: Rows per chunk of the ``(N * num_samples, N)`` log-density matrix.
        generator: For the draws.

    Returns:
        A dict of :class:`~gdmlib.divergences.Estimate` (value, stderr) with keys ``avg_kl``,
        ``mutual_info``, ``marginal_kl``, ``reconstruction``, ``elbo`` and ``identity_gap``.

    Raises:
        TypeError: If the model's posterior is not Gaussian.

    Example:
        >>> from gdmlib.vae import make_vae
        >>> _ = torch.manual_seed(0)
        >>> x = (torch.rand(100, 1, 8, 8) < 0.3).float()
        >>> model = make_vae((1, 8, 8), 2, hidden=(16,))
        >>> parts = elbo_surgery(model, x, num_samples=10)
        >>> bool(parts["mutual_info"].value <= math.log(100))
        True
        >>> bool(abs(parts["identity_gap"].value) < 4 * parts["identity_gap"].stderr)
        True
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a gdmlib.vae.VAE, got {type(model).__name__}")
    if not isinstance(model.posterior, GaussianPosterior):
        raise TypeError(
            "elbo_surgery needs a GaussianPosterior: the density of an IAF posterior at other "
            "points' z is too costly"
        )
    data = _check_batch("data", data, model.input_shape)
    num_samples = _check_num_samples(num_samples)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    count = data.shape[0]
    loc, scale = _encode_in_chunks(model.posterior, data, chunk_size)
    _same_device(loc, data, "the model and the data")

    z = gaussian.rsample(loc, scale, num_samples, generator)  # (S, N, D)
    # Densities in float64: in float32, rounding alone can push a term of I_q above log N.
    z64, loc64, scale64 = z.double(), loc.double(), scale.double()
    log_q_own = gaussian.log_prob(z64, loc64, scale64)  # (S, N)
    pairs = gaussian_log_prob_pairwise(
        z64.reshape(-1, model.latent_dim), loc64, scale64, chunk_size=chunk_size
    )
    log_q_agg = (torch.logsumexp(pairs, -1) - math.log(count)).reshape(num_samples, count)
    log_p = model.prior.log_prob(z).double()
    reconstruction = torch.cat(
        [
            model.decoder.log_prob(data[s : s + chunk_size], z[:, s : s + chunk_size])
            for s in range(0, count, chunk_size)
        ],
        dim=-1,
    )
    # Per data point, averaged over its draws: the unit whose spread gives the standard errors.
    mutual_info = (log_q_own - log_q_agg).mean(0)
    marginal_kl = (log_q_agg - log_p).mean(0)
    reconstruction = reconstruction.mean(0)
    if type(model.prior) is StandardNormalPrior:
        avg_kl_points = gaussian.kl_standard_normal(loc64, scale64)
        avg_kl = Estimate(float(avg_kl_points.double().mean()), 0.0)
    else:
        z_independent = gaussian.rsample(loc, scale, num_samples, generator)
        log_q_independent = gaussian.log_prob(z_independent.double(), loc64, scale64)
        avg_kl_points = (log_q_independent - model.prior.log_prob(z_independent).double()).mean(0)
        avg_kl = _mean_se(avg_kl_points)
    split = _mean_se(mutual_info + marginal_kl)
    gap = Estimate(avg_kl.value - split.value, math.hypot(avg_kl.stderr, split.stderr))
    return {
        "avg_kl": avg_kl,
        "mutual_info": _mean_se(mutual_info),
        "marginal_kl": _mean_se(marginal_kl),
        "reconstruction": _mean_se(reconstruction),
        "elbo": _mean_se(reconstruction.double() - avg_kl_points),
        "identity_gap": gap,
    }


@torch.no_grad()
def elbo_surgery_on_grid(
    aggregate: AggregatePosterior,
    prior: Prior,
    *,
    limit: float | None = None,
    points: int | None = None,
    max_points: int = 2001,
) -> dict[str, float]:
    r"""The terms of ELBO surgery by quadrature, for a 1- or 2-dimensional latent: a reference for
    :func:`elbo_surgery`.

    The aggregated posterior
    :math:`q(z) = \frac1N \sum_n \mathcal{N}(z; \mu_n, \mathrm{diag}\,\sigma_n^2)` is evaluated on
    the nodes :math:`z_g` of a regular grid on :math:`[-L, L]^D` with cell volume :math:`\Delta`
    (for :math:`D = 2` as a product of 1-D Gaussian densities, one matrix product), and

    .. math::
        \mathrm{KL}\bigl(q(z) \,\|\, p\bigr) \approx \Delta \sum_g q(z_g) \log
        \frac{q(z_g)}{p(z_g)}, \qquad
        H\bigl(q(z)\bigr) \approx -\Delta \sum_g q(z_g) \log q(z_g), \qquad
        I_q(n; z) = H\bigl(q(z)\bigr) - \frac1N \sum_n H\bigl(q(z \mid x_n)\bigr),

    the last with the closed-form Gaussian entropies
    :math:`H(q(z \mid x_n)) = \frac D2 \log(2\pi e) + \sum_d \log \sigma_{n,d}` (the mutual
    information is :math:`\mathbb{E} \log q(z \mid x_n) - \mathbb{E} \log q(z)`). Nothing here is
    Monte Carlo and nothing is shared with :func:`elbo_surgery`'s estimator, whose terms both
    contain :math:`\log q(z)` at the posterior draws: comparing the two, within a few of
    :func:`elbo_surgery`'s standard errors, checks that estimator (a wrong :math:`\log q(z)` moves
    both of its terms and leaves their sum, and so the identity, intact).

    The rectangle rule is spectrally accurate for a smooth integrand that is negligible outside the
    box (Trefethen & Weideman 2014): the defaults take
    :math:`L = \max_{n,d} |\mu_{n,d}| + 8 \sigma_{n,d}` and a step of half the smallest
    :math:`\sigma_{n,d}`, where the error is far below any Monte Carlo error. ``mass``
    (:math:`\Delta \sum_g q(z_g)`, which should be 1) reports the coverage.

    Args:
        aggregate: The :class:`AggregatePosterior` of a 1- or 2-dimensional encoder.
        prior: Any :class:`Prior` of the same dimension (its ``log_prob`` is called on the grid).
        limit: Half-width :math:`L` of the box; default as above.
        points: Nodes per axis (at least 3); default from the step above.
        max_points: The largest ``points`` accepted, a guard against a grid too large for memory.

    Returns:
        The floats ``mass``, ``entropy`` (:math:`H(q(z))`), ``mutual_info`` and ``marginal_kl``,
        in a dict.

    Raises:
        TypeError: If ``aggregate`` or ``prior`` has the wrong type.
        ValueError: For a latent dimension other than 1 or 2, mismatched dimensions, a bad ``limit``
            or ``points``, or a grid that would need more than ``max_points`` nodes per axis.

    Example:
        >>> from gdmlib.vae import make_vae
        >>> _ = torch.manual_seed(0)
        >>> model = make_vae((1, 4, 4), 2, hidden=(8,))
        >>> x = (torch.rand(50, 1, 4, 4) < 0.5).float()
        >>> terms = elbo_surgery_on_grid(AggregatePosterior(model.posterior, x), model.prior)
        >>> (
        ...     abs(terms["mass"] - 1) < 1e-6,
        ...     0 <= terms["mutual_info"] <= math.log(50),
        ...     terms["marginal_kl"] >= 0,
        ... )
        (True, True, True)
    """
    if not isinstance(aggregate, AggregatePosterior):
        raise TypeError(f"aggregate must be an AggregatePosterior, got {type(aggregate).__name__}")
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a gdmlib.vae.Prior, got {type(prior).__name__}")
    dim = aggregate.latent_dim
    if dim not in (1, 2):
        raise ValueError(f"a grid covers 1- or 2-dimensional latents only, the aggregate has {dim}")
    if getattr(prior, "latent_dim", dim) != dim:
        raise ValueError(f"the prior has latent dimension {prior.latent_dim}, the aggregate {dim}")
    max_points = _check_positive_int("max_points", max_points)
    loc, scale = aggregate.loc.double(), aggregate.scale.double()
    if limit is None:
        limit = float((loc.abs() + 8 * scale).max())
    elif isinstance(limit, bool) or not (
        isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0
    ):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    if points is None:
        points = max(33, math.ceil(2 * limit / (0.5 * float(scale.min()))) + 1)
    points = _check_positive_int("points", points)
    if points < 3:
        raise ValueError(f"points must be at least 3, got {points}")
    if points > max_points:
        raise ValueError(
            f"the grid needs {points} nodes per axis, more than max_points={max_points}: the "
            "posteriors are too narrow for the box; pass a smaller limit, fewer points or a "
            "larger max_points"
        )
    count = loc.shape[0]
    axis = torch.linspace(-limit, limit, points, dtype=torch.float64, device=loc.device)
    # Per axis d, the (N, points) matrix of the 1-D densities N(axis; mu_{n,d}, sigma_{n,d}^2).
    factors = [
        torch.exp(-0.5 * ((axis - loc[:, d, None]) / scale[:, d, None]).square())
        / (scale[:, d, None] * math.sqrt(2 * math.pi))
        for d in range(dim)
    ]
    if dim == 1:
        density, grid = factors[0].mean(0), axis[:, None]
    else:  # q(z1_i, z2_j) = 1/N sum_n f1[n, i] f2[n, j]; flattened in cartesian_prod's order
        density, grid = (
            (factors[0].T @ factors[1]).reshape(-1) / count,
            torch.cartesian_prod(axis, axis),
        )
    device, dtype = prior._device_dtype()
    log_p = prior.log_prob(grid.to(device=device, dtype=dtype)).double().to(loc.device)
    cell = float(axis[1] - axis[0]) ** dim
    positive = density > 0  # where q underflows, q log q = 0
    log_q = torch.where(positive, density.clamp_min(1e-300).log(), torch.zeros_like(density))
    entropy = -float((density * log_q).sum()) * cell
    marginal_kl = (
        float(torch.where(positive, density * (log_q - log_p), torch.zeros_like(density)).sum())
        * cell
    )
    posterior_entropy = float(
        (0.5 * dim * math.log(2 * math.pi * math.e) + scale.log().sum(-1)).mean()
    )
    return {
        "mass": float(density.sum()) * cell,
        "entropy": entropy,
        "mutual_info": entropy - posterior_entropy,
        "marginal_kl": marginal_kl,
    }
