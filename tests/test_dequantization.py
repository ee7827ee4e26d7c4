"""Tests of gdmlib.dequantization: the quadrature against closed-form cell probabilities, both
bounds below the exact discrete log-likelihood, equality for the exact conditional q, the
dequantizer's density, training, and bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from gdmlib.dequantization import (
    DequantizationBound,
    ExactDequantizer,
    VariationalDequantizer,
    discrete_log_prob,
    uniform_dequantization_bound,
    variational_dequantization_bound,
)
from gdmlib.training import fit


def diagonal_mixture(device: torch.device, dtype: torch.dtype = torch.float64) -> MixtureSameFamily:
    loc = torch.tensor([[1.2, 2.5], [3.0, 0.7]], device=device, dtype=dtype)
    scale = torch.tensor([[0.6, 0.9], [0.4, 0.5]], device=device, dtype=dtype)
    weights = torch.tensor([0.3, 0.7], device=device, dtype=dtype)
    return MixtureSameFamily(Categorical(weights), Independent(Normal(loc, scale), 1))


def closed_form_cells(mixture: MixtureSameFamily, x: Tensor) -> Tensor:
    """P(x) of a diagonal Gaussian mixture: a sum over components of products of CDF differences."""
    components = mixture.component_distribution.base_dist  # batch (K, d)
    xf = x.to(components.loc.dtype)[:, None, :]
    cells = (components.cdf(xf + 1) - components.cdf(xf)).prod(-1)  # (B, K)
    return torch.log((cells * mixture.mixture_distribution.probs).sum(-1))


def test_quadrature_matches_closed_form_cell_probabilities(device: torch.device) -> None:
    mixture = diagonal_mixture(device)
    x = torch.cartesian_prod(torch.arange(-1, 5), torch.arange(-1, 5)).to(device)
    exact = closed_form_cells(mixture, x)
    quadrature = discrete_log_prob(mixture.log_prob, x, nodes=32, dtype=torch.float64)
    assert quadrature.shape == (36,)
    assert torch.allclose(quadrature, exact, atol=1e-9, rtol=0)
    # The cells around the mass sum to almost 1.
    wide = torch.cartesian_prod(torch.arange(-4, 9), torch.arange(-4, 9)).to(device)
    total = discrete_log_prob(mixture.log_prob, wide, nodes=24, dtype=torch.float64).exp().sum()
    assert abs(float(total) - 1) < 1e-6


def test_both_bounds_lie_below_the_exact_log_probability(device: torch.device) -> None:
    mixture = diagonal_mixture(device)
    x = torch.cartesian_prod(torch.arange(0, 4), torch.arange(0, 4)).to(device)
    exact = closed_form_cells(mixture, x)
    generator = torch.Generator(device).manual_seed(0)
    uniform = uniform_dequantization_bound(
        mixture.log_prob, x, 4000, generator=generator, dtype=torch.float64
    )
    q = VariationalDequantizer(2, hidden=(16,), num_layers=1, flow_hidden=(16,)).to(
        device, torch.float64
    )
    variational = variational_dequantization_bound(
        mixture.log_prob, x, q, 4000, generator=generator
    )
    for bound in (uniform, variational):
        assert isinstance(
            bound, DequantizationBound
        ) and bound.value.shape == bound.stderr.shape == (16,)
        assert (bound.value <= exact + 4 * bound.stderr).all()
    # The uniform bound's gap is large where the density varies over the cell.
    assert float((exact - uniform.value).max()) > 0.1


def test_the_variational_bound_is_exact_for_the_exact_conditional(device: torch.device) -> None:
    loc = torch.tensor([0.3, -1.0], dtype=torch.float64, device=device)
    marginals = Normal(loc, torch.tensor([1.0, 0.6], dtype=torch.float64, device=device))
    q = ExactDequantizer(marginals)
    x = torch.tensor([[-3, 0], [-1, -1], [0, -2], [2, 1]], device=device)
    # Closed form, and the generic quadrature, of the cell probabilities.
    exact = torch.log(marginals.cdf(x + 1.0) - marginals.cdf(x.double())).sum(-1)
    assert torch.allclose(q.cell_log_prob(x), exact, atol=1e-12)
    assert torch.allclose(
        discrete_log_prob(q.log_density, x, dtype=torch.float64), exact, atol=1e-10
    )
    u, log_q = q.rsample_and_log_prob(x, 7, generator=torch.Generator(device).manual_seed(0))
    assert u.shape == (7, 4, 2) and log_q.shape == (7, 4) and ((u >= 0) & (u <= 1)).all()
    bound = variational_dequantization_bound(q.log_density, x, q, 50)
    assert torch.allclose(bound.value, exact, atol=1e-9)
    assert float(bound.stderr.max()) < 1e-9  # zero variance: log p(x + u) - log q(u | x) = log P(x)
    uniform = uniform_dequantization_bound(q.log_density, x, 50, dtype=torch.float64)
    assert (uniform.value < exact - 1e-3).all()


def test_dequantizer_density_matches_its_samples_and_integrates_to_one(
    device: torch.device,
) -> None:
    q = VariationalDequantizer(1, hidden=(8,), num_layers=2, flow_hidden=(8,)).to(
        device, torch.float64
    )
    x = torch.tensor([[0], [4]], device=device)
    u, log_q = q.rsample_and_log_prob(x, 6)
    assert torch.allclose(q.log_prob(u, x), log_q, atol=1e-8)
    # Midpoint rule on (0, 1): the density integrates to one for each x.
    grid = ((torch.arange(20_000, device=device, dtype=torch.float64) + 0.5) / 20_000)[
        :, None, None
    ].expand(-1, 2, 1)
    mass = q.log_prob(grid, x).exp().mean(0)
    assert torch.allclose(mass, torch.ones(2, dtype=torch.float64, device=device), atol=1e-3)


def test_training_the_dequantizer_tightens_the_bound() -> None:
    normal = Normal(torch.tensor(0.0), 1.0)

    def log_density(v: Tensor) -> Tensor:
        return normal.log_prob(v).squeeze(-1)

    data = torch.tensor([[-2], [-1], [0], [1]]).repeat(16, 1)
    x = torch.tensor([[-2], [-1], [0], [1]])
    q = VariationalDequantizer(1, hidden=(16,), num_layers=0)
    exact = torch.log(normal.cdf(x + 1.0) - normal.cdf(x.float())).squeeze(-1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = variational_dequantization_bound(
            log_density, x, q, 2000, generator=generator
        ).value
    fit(
        q,
        data,
        steps=150,
        batch_size=32,
        lr=2e-2,
        loss=lambda batch: -variational_dequantization_bound(log_density, batch, q, 8).value.mean(),
    )
    with torch.no_grad():
        after = variational_dequantization_bound(log_density, x, q, 2000, generator=generator)
    uniform = uniform_dequantization_bound(log_density, x, 2000, generator=generator)
    assert (after.value <= exact + 4 * after.stderr).all()
    assert float((exact - after.value).mean()) < 0.5 * float((exact - uniform.value).mean())
    assert float(after.value.mean()) > float(before.mean())


def test_single_draw_has_nan_stderr_and_gradients_flow() -> None:
    q = VariationalDequantizer(2, hidden=(8,), num_layers=1, flow_hidden=(8,))
    p = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    bound = variational_dequantization_bound(p.log_prob, torch.tensor([[0, 1], [1, 1]]), q, 1)
    assert torch.isnan(bound.stderr).all()
    bound.value.sum().backward()
    assert all(param.grad is not None for param in q.parameters() if param.requires_grad)


def test_bad_inputs_raise_clear_errors() -> None:
    p = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    x = torch.tensor([[0, 1]])
    with pytest.raises(TypeError, match="tensor of integer levels"):
        uniform_dequantization_bound(p.log_prob, [[0, 1]])
    with pytest.raises(ValueError, match="shape \\(batch, features\\)"):
        uniform_dequantization_bound(p.log_prob, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must hold integers"):
        discrete_log_prob(p.log_prob, torch.tensor([[0.5, 1.0]]))
    with pytest.raises(TypeError, match="integer levels"):
        discrete_log_prob(p.log_prob, torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match="num_samples"):
        uniform_dequantization_bound(p.log_prob, x, 0)
    with pytest.raises(TypeError, match="callable"):
        uniform_dequantization_bound("normal", x)
    with pytest.raises(ValueError, match="log_density must map"):
        uniform_dequantization_bound(lambda v: v, x)
    with pytest.raises(ValueError, match="exceeds"):
        discrete_log_prob(lambda v: v.sum(-1), torch.zeros(1, 5, dtype=torch.long), nodes=32)
    with pytest.raises(TypeError, match="floating"):
        discrete_log_prob(p.log_prob, x, dtype=torch.int32)
    with pytest.raises(TypeError, match="rsample_and_log_prob"):
        variational_dequantization_bound(p.log_prob, x, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="2 features"):
        VariationalDequantizer(2).rsample_and_log_prob(torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="num_layers"):
        VariationalDequantizer(2, num_layers=-1)
    with pytest.raises(ValueError, match="input_scale"):
        VariationalDequantizer(2, input_scale=0.0)
    with pytest.raises(ValueError, match="open unit cell"):
        VariationalDequantizer(2).log_prob(torch.ones(1, 2), x)

    with pytest.raises(TypeError, match="torch.distributions"):
        ExactDequantizer("normal")
    with pytest.raises(ValueError, match="batch_shape"):
        ExactDequantizer(Normal(torch.zeros(2, 2), 1.0))
    with pytest.raises(TypeError, match="cdf and icdf"):
        ExactDequantizer(torch.distributions.Gamma(torch.ones(2), 1.0))
    with pytest.raises(ValueError, match="2 features"):
        ExactDequantizer(Normal(torch.zeros(2), 1.0)).cell_log_prob(torch.tensor([[0, 1, 2]]))

    class Outside(nn.Module):
        def rsample_and_log_prob(
            self, x: Tensor, num_samples: int, *, generator=None
        ) -> tuple[Tensor, Tensor]:
            return torch.full((num_samples, *x.shape), 1.5), torch.zeros(num_samples, x.shape[0])

    with pytest.raises(ValueError, match="unit cell"):
        variational_dequantization_bound(p.log_prob, x, Outside())
