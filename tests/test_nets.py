"""Tests of gdmlib.nets: shapes, activations, spectral normalisation, per-sample independence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdmlib.nets import MLP, BatchedMLP, ConvDecoder8, ConvEncoder8, make_activation


def _linears(module: nn.Module) -> list[nn.Module]:
    return [
        layer
        for layer in module.modules()
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
    ]


def test_mlp_shapes_on_device(device: torch.device) -> None:
    net = MLP(3, 2, hidden=(16, 8)).to(device)
    assert net(torch.randn(5, 3, device=device)).shape == (5, 2)
    out = net(torch.randn(4, 5, 3, device=device))
    assert out.shape == (4, 5, 2) and out.device.type == device.type


def test_mlp_structure_and_linear_output() -> None:
    net = MLP(3, 2, hidden=(16, 8), activation="tanh")
    kinds = [type(layer) for layer in net.net]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert [layer.out_features for layer in _linears(net)] == [16, 8, 2]
    affine = MLP(3, 2, hidden=())
    assert [type(layer) for layer in affine.net] == [nn.Linear]
    x = torch.randn(7, 3)
    torch.testing.assert_close(affine(x), x @ affine.net[0].weight.T + affine.net[0].bias)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("relu", nn.ReLU),
        ("leaky_relu", nn.LeakyReLU),
        ("elu", nn.ELU),
        ("tanh", nn.Tanh),
        ("ReLU", nn.ReLU),
    ],
)
def test_activation_names(name: str, kind: type) -> None:
    assert isinstance(make_activation(name), kind)
    assert isinstance(MLP(2, 1, hidden=(4,), activation=name).net[1], kind)


def test_leaky_relu_slope_is_dcgan_default() -> None:
    assert make_activation("leaky_relu").negative_slope == pytest.approx(0.2)


def test_activation_classes_factories_and_instances() -> None:
    assert isinstance(MLP(2, 1, hidden=(4,), activation=nn.SiLU).net[1], nn.SiLU)
    assert isinstance(
        MLP(2, 1, hidden=(4,), activation=lambda: nn.LeakyReLU(0.1)).net[1], nn.LeakyReLU
    )
    shared = nn.PReLU()
    net = MLP(2, 1, hidden=(4, 4), activation=shared)
    assert net.net[1] is not shared and net.net[1] is not net.net[3]  # copied, never shared


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        MLP(0, 1)
    with pytest.raises(TypeError, match="out_features must be an int"):
        MLP(2, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        MLP(2, 1, hidden=64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every hidden width must be a positive int"):
        MLP(2, 1, hidden=(8, 0))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP(2, 1, activation="swish")
    with pytest.raises(TypeError, match="activation must be"):
        MLP(2, 1, activation=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must return an nn.Module"):
        MLP(2, 1, activation=lambda: torch.relu)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        MLP(3, 1)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="channels must be a positive int"):
        ConvEncoder8(4, channels=0)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        ConvEncoder8(4)(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        ConvDecoder8(4)(torch.randn(2, 5))


def test_spectral_norm_makes_every_weight_unit_norm() -> None:
    net = MLP(5, 3, hidden=(32, 32), spectral_norm=True)
    for _ in range(10):  # each training-mode forward refines the power iteration
        net(torch.randn(8, 5))
    for layer in _linears(net):
        assert nn.utils.parametrize.is_parametrized(layer, "weight")
        sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)


def test_conv_encoder_accepts_images_and_flat_vectors(device: torch.device) -> None:
    encoder = ConvEncoder8(6).to(device)
    images = torch.rand(5, 1, 8, 8, device=device)
    out = encoder(images)
    assert out.shape == (5, 6) and out.device.type == device.type
    torch.testing.assert_close(encoder(images.reshape(5, 64)), out)
    assert sum(p.numel() for p in encoder.parameters()) < 200_000  # "small": ~100k at channels=32


def test_conv_decoder_outputs_logits_and_trains_every_parameter(device: torch.device) -> None:
    decoder = ConvDecoder8(4, channels=8).to(device)
    logits = decoder(torch.randn(3, 4, device=device))
    assert logits.shape == (3, 1, 8, 8) and logits.device.type == device.type
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())


@pytest.mark.parametrize(
    "net", [ConvEncoder8(1, channels=8), ConvDecoder8(4, channels=8)], ids=["encoder", "decoder"]
)
def test_conv_blocks_treat_samples_independently(net: nn.Module) -> None:
    # No batch normalisation: a sample's output must not depend on the rest of the batch
    # (the per-sample gradient penalty relies on this).
    x = torch.randn(4, 1, 8, 8) if isinstance(net, ConvEncoder8) else torch.randn(4, 4)
    batched = net(x)
    one_by_one = torch.cat([net(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, one_by_one)


def test_conv_spectral_norm_builds_and_runs() -> None:
    encoder, decoder = (
        ConvEncoder8(2, channels=4, spectral_norm=True),
        ConvDecoder8(2, channels=4, spectral_norm=True),
    )
    assert all(
        nn.utils.parametrize.is_parametrized(layer, "weight")
        for layer in _linears(encoder) + _linears(decoder)
    )
    assert decoder(encoder(torch.rand(2, 1, 8, 8))).shape == (2, 1, 8, 8)


# ---------------------------------------------------------------------------------------------
# Bad inputs at call time (issue 11): refused with the argument and the remedy, not a raw error
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "x", "error", "match"),
    [
        (
            lambda: MLP(2, 1),
            "abc",
            TypeError,
            "expects a torch.Tensor for x, got str",
        ),  # was AttributeError
        (lambda: MLP(2, 1), [[1.0, 2.0]], TypeError, "expects a torch.Tensor"),
        (
            lambda: MLP(2, 1),
            torch.zeros(3, 2, dtype=torch.float64),
            TypeError,
            "torch.float64 .* torch.float32",
        ),
        (
            lambda: MLP(2, 1),
            torch.zeros(3, 2, dtype=torch.long),
            TypeError,
            "torch.int64 .* torch.float32",
        ),
        (
            lambda: MLP(2, 1).double(),
            torch.zeros(3, 2),
            TypeError,
            "torch.float32 .* torch.float64",
        ),
        (
            lambda: MLP(2, 1),
            torch.zeros(3, 2, device="meta"),
            ValueError,
            "x is on meta but the MLP on cpu",
        ),
        (lambda: MLP(2, 1), torch.zeros(3, 3), ValueError, r"shape \(\.\.\., 2\)"),
        (
            lambda: ConvEncoder8(1, channels=4),
            torch.zeros(2, 64, dtype=torch.float64),
            TypeError,
            "float64",
        ),
        (lambda: ConvDecoder8(2, channels=4), "z", TypeError, "for z, got str"),
        (
            lambda: BatchedMLP(2, 2, 1, hidden=(4,)),
            torch.zeros(2, 3, 2, dtype=torch.float64),
            TypeError,
            "float64",
        ),
    ],
)
def test_networks_refuse_bad_inputs(build, x, error, match) -> None:
    with pytest.raises(error, match=match):
        build()(x)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("abc", 1), TypeError, "in_features must be an int, got str"),
        ((2, 1.5), TypeError, "out_features must be an int"),
        ((2, 0), ValueError, "out_features must be a positive int"),
        ((2, 1, 8), TypeError, "hidden must be a sequence"),
        ((2, 1, (8, 0)), ValueError, "every hidden width"),
        ((2, 1, (8,), "gelu"), ValueError, "unknown activation"),
    ],
)
def test_mlp_refuses_bad_arguments(args, error, match) -> None:
    with pytest.raises(error, match=match):
        MLP(*args)
