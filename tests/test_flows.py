"""Tests of gdmlib.flows: invertibility, Jacobians and log-determinants against autograd, the
autoregressive structure, gradients, normalisation of the flow density, shapes and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from gdmlib.flows import (
    MADE,
    AffineCoupling,
    Compose,
    Flow,
    Inverse,
    InverseAutoregressive,
    MaskedAutoregressive,
    Permutation,
    Reverse,
    Transform,
    iaf,
    maf,
    realnvp,
)

D, C = 4, 3  # features, context features
NETWORK_KINDS = ["coupling", "maf", "iaf", "realnvp", "maf_stack", "iaf_stack"]
ALL_KINDS = NETWORK_KINDS + ["permutation", "reverse", "inverse_coupling"]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def make(kind: str, context_features: int = 0, features: int = D) -> Transform:
    options = dict(hidden=(16, 16), activation="tanh", context_features=context_features)
    builders = {
        "coupling": lambda: AffineCoupling(features, **options),
        "maf": lambda: MaskedAutoregressive(features, **options),
        "iaf": lambda: InverseAutoregressive(features, **options),
        "realnvp": lambda: realnvp(features, 3, **options),
        "maf_stack": lambda: maf(features, 3, **options),
        "iaf_stack": lambda: iaf(features, 3, **options),
        "permutation": lambda: Permutation(torch.randperm(features)),
        "reverse": lambda: Reverse(features),
        "inverse_coupling": lambda: Inverse(AffineCoupling(features, **options)),
    }
    transform = builders[kind]()
    # Default initialisations give log-scales near 0; larger output weights make every layer
    # visibly non-linear, so that the checks below are not passed by a near-identity map.
    with torch.no_grad():
        for module in transform.modules():
            if isinstance(module, nn.Linear) and module.out_features == 2 * features:
                module.weight.mul_(3.0)
    return transform


def context_for(
    batch: tuple[int, ...], conditional: bool, device, dtype=torch.float32
) -> torch.Tensor | None:
    return torch.randn(*batch, C, device=device, dtype=dtype) if conditional else None


# ---------------------------------------------------------------------------------------------
# Invertibility and log-determinants
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_inverse_undoes_forward(kind: str, dtype: torch.dtype, device: torch.device) -> None:
    conditional = kind in NETWORK_KINDS
    transform = make(kind, C if conditional else 0).to(device, dtype)
    x = 2 * torch.randn(64, D, device=device, dtype=dtype)
    context = context_for((64,), conditional, device, dtype)
    z, ladj = transform(x, context)
    x_back, ladj_back = transform.inverse(z, context)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(x_back, x, atol=tol, rtol=tol)
    torch.testing.assert_close(ladj_back, -ladj, atol=tol, rtol=tol)
    z_again, _ = transform(transform.inverse(z, context)[0], context)
    torch.testing.assert_close(z_again, z, atol=tol, rtol=tol)
    assert z.dtype == dtype and z.device.type == device.type and ladj.shape == (64,)


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("kind", NETWORK_KINDS)
def test_log_det_matches_autograd_jacobian(kind: str, conditional: bool) -> None:
    transform = make(kind, C if conditional else 0).double()
    for _ in range(3):
        x = 1.5 * torch.randn(D, dtype=torch.float64)
        context = context_for((), conditional, "cpu", torch.float64)
        z, ladj = transform(x, context)
        jac = jacobian(lambda v, context=context: transform(v, context)[0], x)
        torch.testing.assert_close(
            ladj, torch.linalg.slogdet(jac).logabsdet, atol=1e-10, rtol=1e-10
        )
        jac_inverse = jacobian(lambda v, context=context: transform.inverse(v, context)[0], z)
        _, ladj_inverse = transform.inverse(z, context)
        torch.testing.assert_close(
            ladj_inverse, torch.linalg.slogdet(jac_inverse).logabsdet, atol=1e-10, rtol=1e-10
        )
        torch.testing.assert_close(
            jac_inverse @ jac, torch.eye(D, dtype=torch.float64), atol=1e-9, rtol=0
        )


def test_permutations_move_features_and_preserve_volume() -> None:
    x = torch.arange(4.0).expand(2, 4)
    z, ladj = Permutation([2, 0, 3, 1])(x)
    assert z[0].tolist() == [2.0, 0.0, 3.0, 1.0] and ladj.tolist() == [0.0, 0.0]
    assert Reverse(4)(x)[0][0].tolist() == [3.0, 2.0, 1.0, 0.0]


# ---------------------------------------------------------------------------------------------
# Structure of the Jacobians
# ---------------------------------------------------------------------------------------------


def test_made_is_autoregressive_in_its_order_and_sees_the_context() -> None:
    order = torch.tensor([2, 0, 3, 1])
    made = MADE(
        D, params_per_feature=3, hidden=(16, 16), activation="tanh", context_features=C, order=order
    ).double()
    x, h = torch.randn(D, dtype=torch.float64), torch.randn(C, dtype=torch.float64)
    jac_x = jacobian(lambda v: made(v, h), x)  # (3, D, D): output p of feature i w.r.t. x_j
    allowed = order[None, :] < order[:, None]  # [i, j]: order_j < order_i
    assert torch.all(jac_x[:, ~allowed] == 0)
    assert torch.all(jac_x[:, allowed] != 0)  # masks are not stricter than they should be
    jac_h = jacobian(lambda c: made(x, c), h)  # (3, D, C)
    assert torch.all(jac_h.abs().sum(-1) > 0)  # every output, the first in the order included


def test_made_with_one_feature_or_no_hidden_layer() -> None:
    single = MADE(1, hidden=(8,))
    out = single(torch.randn(5, 1))
    torch.testing.assert_close(out, out[:1].expand_as(out))  # nothing to condition on: constant
    linear = MADE(3, hidden=()).double()
    jac = jacobian(lambda v: linear(v), torch.randn(3, dtype=torch.float64))
    assert torch.all(jac[:, torch.ones(3, 3, dtype=torch.bool).triu()] == 0)


@pytest.mark.parametrize("kind", ["maf", "iaf"])
def test_autoregressive_layers_have_triangular_jacobians(kind: str) -> None:
    order = torch.tensor([1, 3, 0, 2])
    layer_type = MaskedAutoregressive if kind == "maf" else InverseAutoregressive
    layer = layer_type(D, hidden=(16, 16), activation="tanh", order=order).double()
    allowed = order[None, :] < order[:, None]
    x = torch.randn(D, dtype=torch.float64)
    for direction in (layer.forward, layer.inverse):
        jac = jacobian(lambda v, direction=direction: direction(v)[0], x)
        off_diagonal = ~torch.eye(D, dtype=torch.bool)
        assert torch.all(jac[~allowed & off_diagonal] == 0)
        assert torch.all(jac[allowed] != 0) and torch.all(jac.diagonal() > 0)
    # The cheap direction is one MADE pass on its input: MAF's forward, IAF's inverse.
    cheap = layer.forward if kind == "maf" else layer.inverse
    made = layer.made if kind == "maf" else layer.transform.made
    shift, raw = made(x).unbind(-2)
    log_scale = 5.0 * torch.tanh(raw / 5.0)
    torch.testing.assert_close(cheap(x)[0], x * log_scale.exp() + shift)


def test_coupling_jacobian_is_block_triangular() -> None:
    mask = torch.tensor([False, True, False, True])
    layer = AffineCoupling(D, mask, hidden=(16,), activation="tanh").double()
    jac = jacobian(lambda v: layer(v)[0], torch.randn(D, dtype=torch.float64))
    kept, changed = mask.nonzero().flatten(), (~mask).nonzero().flatten()
    torch.testing.assert_close(jac[kept][:, kept], torch.eye(2, dtype=torch.float64))
    assert torch.all(jac[kept][:, changed] == 0)
    block = jac[changed][:, changed]
    assert torch.all(block == torch.diag(block.diagonal())) and torch.all(block.diagonal() > 0)
    assert torch.all(jac[changed][:, kept] != 0)


def test_log_scale_is_soft_clamped() -> None:
    layer = AffineCoupling(D, hidden=(8,), log_scale_bound=2.0)
    with torch.no_grad():
        layer.conditioner.net[-1].bias.fill_(100.0)
    _, ladj = layer(torch.randn(10, D))
    torch.testing.assert_close(ladj, torch.full((10,), 2.0 * 2))  # 2 transformed features, s = B


# ---------------------------------------------------------------------------------------------
# The flow distribution
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["realnvp", "maf_stack", "iaf_stack"])
def test_density_integrates_to_the_mass_its_samples_put_in_a_box(kind: str) -> None:
    flow = Flow(make(kind, features=2)).double()
    half_width = 12.0
    grid = torch.linspace(-half_width, half_width, 361, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        log_p = flow.log_prob(points)
    integral = float(log_p.exp().sum()) * float(grid[1] - grid[0]) ** 2
    # Some random flows have heavy tails, so the box need not hold all the mass: compare the
    # integral over the box with the fraction of the flow's own samples that fall in it.
    samples = flow.sample(50_000, generator=torch.Generator().manual_seed(0))
    inside = float((samples.abs().amax(-1) <= half_width).double().mean())
    stderr = math.sqrt(max(inside * (1 - inside), 1e-12) / 50_000)
    assert inside > 0.9
    assert integral == pytest.approx(inside, abs=4 * stderr + 1e-3)
    # ... and the flow is far from its base: the check is not passed by a near-identity map.
    assert float((log_p - flow.base.log_prob(points)).abs().max()) > 0.5


def test_one_dimensional_flow_matches_change_of_variables() -> None:
    flow = Flow(maf(1, 3, hidden=(8,))).double()
    # With D = 1 each layer is affine with constant (learned) parameters, so the flow is a normal
    # law: z = a x + b with a > 0 gives p(x) = N(x; -b/a, 1/a^2).
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    b = flow.transform(zero)[0]
    a = flow.transform(one)[0] - b
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64)[:, None]
    expected = torch.distributions.Normal(-b / a, 1 / a).log_prob(x).squeeze(-1)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-12, rtol=1e-12)
    density = flow.log_prob(x).detach().exp()
    assert float(torch.trapezoid(density, x.squeeze(-1))) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["realnvp", "maf_stack", "iaf_stack"])
def test_rsample_and_log_prob_agrees_with_log_prob(kind: str, device: torch.device) -> None:
    flow = Flow(make(kind, C)).to(device)
    context = torch.randn(5, C, device=device)
    x, log_q = flow.rsample_and_log_prob(7, context=context)
    assert x.shape == (7, 5, D) and log_q.shape == (7, 5) and x.device.type == device.type
    torch.testing.assert_close(log_q, flow.log_prob(x, context), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["realnvp", "maf_stack", "iaf_stack"])
def test_gradients_reach_every_parameter_and_the_context(kind: str) -> None:
    flow = Flow(make(kind, C))
    for loss_of in (
        lambda h: -flow.log_prob(torch.randn(32, D), h).mean(),  # density estimation (prior)
        lambda h: (
            flow.rsample_and_log_prob(4, h)[1].mean() + flow.rsample(context=h).square().mean()
        ),  # posterior
    ):
        flow.zero_grad()
        context = torch.randn(32, C, requires_grad=True)
        loss_of(context).backward()
        for name, parameter in flow.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        assert context.grad is not None and torch.all(context.grad.abs().sum(-1) > 0)


def test_shapes_with_batch_dimensions(device: torch.device) -> None:
    flow = Flow(make("maf_stack", C)).to(device)
    x = torch.randn(2, 3, D, device=device)
    assert flow.log_prob(x, torch.randn(2, 3, C, device=device)).shape == (2, 3)
    assert flow.log_prob(x, torch.randn(C, device=device)).shape == (2, 3)  # broadcast context
    assert flow.log_prob(x[0, 0], torch.randn(C, device=device)).shape == ()
    z, ladj = flow.transform(x[0], torch.randn(6, 1, C, device=device))  # broadcast both ways
    assert z.shape == (6, 3, D) and ladj.shape == (6, 3)
    unconditional = Flow(make("realnvp")).to(device)
    assert unconditional.sample(5).shape == (5, D) and unconditional.sample((2, 3)).shape == (
        2,
        3,
        D,
    )
    assert unconditional.sample().shape == (D,)
    assert flow.rsample(context=torch.randn(4, C, device=device)).shape == (4, D)
    assert flow.sample((2, 5), context=torch.randn(4, C, device=device)).shape == (2, 5, 4, D)


def test_sampling_is_reproducible_and_follows_dtype() -> None:
    flow = Flow(make("iaf_stack")).double()
    first = flow.sample(3, generator=torch.Generator().manual_seed(1))
    second = flow.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second) and first.dtype == torch.float64 and not first.requires_grad
    assert flow.rsample(3).requires_grad


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="features must be at least 2"):
        AffineCoupling(1)
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        AffineCoupling(3, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="keep at least one feature and transform at least one"):
        AffineCoupling(2, torch.tensor([True, True]))
    with pytest.raises(ValueError, match="order must be a permutation"):
        MaskedAutoregressive(3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="permutation must hold each of"):
        Permutation([0, 2])
    with pytest.raises(ValueError, match="log_scale_bound must be positive"):
        MaskedAutoregressive(3, log_scale_bound=0.0)
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        AffineCoupling(2, hidden=16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="context_features must be at least 0"):
        MADE(3, context_features=-1)
    with pytest.raises(ValueError, match="at least one transform"):
        Compose()
    with pytest.raises(ValueError, match="same number of features"):
        Compose(Reverse(2), Reverse(3))
    with pytest.raises(TypeError, match="must be a gdmlib.flows.Transform"):
        Flow(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        maf(2, 0)


def test_bad_inputs_raise_clear_errors() -> None:
    flow = Flow(make("maf_stack"))
    conditional = make("coupling", C)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\)"):
        flow.log_prob(torch.randn(5, 3))
    with pytest.raises(TypeError, match="floating-point"):
        flow.log_prob(torch.ones(5, D, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a context"):
        conditional(torch.randn(5, D))
    with pytest.raises(ValueError, match=r"context must have shape \(\.\.\., 3\)"):
        conditional(torch.randn(5, D), torch.randn(5, 2))
    with pytest.raises(ValueError, match="built without one"):
        flow.log_prob(torch.randn(5, D), torch.randn(5, C))
    with pytest.raises(ValueError, match="non-negative ints"):
        flow.sample(-1)


def test_log_prob_refuses_data_on_another_device() -> None:
    flow = Flow(maf(2, num_layers=1, hidden=(4,)))
    with pytest.raises(ValueError, match="x is on meta but the flow on cpu"):
        flow.log_prob(torch.zeros(3, 2, device="meta"))
