"""Tests of gdmlib.runtime: device and scale choice, seeding, size switch, progress bars."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gdmlib import runtime


def test_scale_follows_environment(monkeypatch):
    monkeypatch.setenv("GDM_SCALE", "full")
    assert runtime.get_scale(torch.device("cpu")) == "full"
    monkeypatch.setenv("GDM_SCALE", "quick")
    assert runtime.get_scale(torch.device("cuda")) == "quick"


def test_scale_default_depends_on_device(monkeypatch):
    monkeypatch.delenv("GDM_SCALE", raising=False)
    assert runtime.get_scale(torch.device("cpu")) == "quick"
    assert runtime.get_scale(torch.device("cuda")) == "full"


def test_bad_scale_rejected(monkeypatch):
    monkeypatch.setenv("GDM_SCALE", "huge")
    with pytest.raises(ValueError, match="'quick' or 'full'"):
        runtime.get_scale()
    with pytest.raises(ValueError, match="'quick' or 'full'"):
        runtime.pick(quick=1, full=2, scale="medium")


def test_device_choice(monkeypatch):
    monkeypatch.setenv("GDM_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")
    monkeypatch.delenv("GDM_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert runtime.get_device().type == "cuda"
    with pytest.raises(ValueError, match="unknown device"):
        runtime.get_device("tpu-ish")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.get_device("cuda")


def test_setup_seeds_every_generator_and_prints(monkeypatch, capsys):
    monkeypatch.setenv("GDM_SCALE", "quick")
    monkeypatch.setenv("GDM_DEVICE", "cpu")
    rt = runtime.setup(seed=7)
    first = (random.random(), np.random.rand(), torch.rand(()).item())
    runtime.setup(seed=7)
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == first
    out = capsys.readouterr().out
    assert "device: cpu" in out and "scale: quick" in out and "torch" in out
    assert rt == runtime.Runtime(device=torch.device("cpu"), scale="quick", seed=7)
    assert rt.quick and rt.pick(quick="small", full="large") == "small"
    assert runtime.pick(quick=1, full=2) == 1


def test_seed_validation():
    with pytest.raises(TypeError, match="seed must be an int"):
        runtime.seed_everything(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        runtime.seed_everything(-1)


def test_progress_is_a_tqdm_bar():
    bar = runtime.progress(range(3), disable=True)
    assert list(bar) == [0, 1, 2]


def test_quick_cpu_mode_uses_one_thread(monkeypatch):
    monkeypatch.setenv("GDM_SCALE", "quick")
    monkeypatch.setenv("GDM_DEVICE", "cpu")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runtime.setup(seed=0, verbose=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_checkpoints_are_off_unless_a_folder_is_given(monkeypatch, tmp_path):
    monkeypatch.delenv("GDM_CHECKPOINT_DIR", raising=False)
    assert runtime.checkpoint_path("10-vae-d5", scale="full") is None
    monkeypatch.setenv("GDM_CHECKPOINT_DIR", "  ")
    assert runtime.checkpoint_path("10-vae-d5", scale="full") is None
    folder = tmp_path / "drive" / "checkpoints"
    monkeypatch.setenv("GDM_CHECKPOINT_DIR", str(folder))
    path = runtime.checkpoint_path("10-vae-d5", scale="full")
    assert path == folder / "10-vae-d5-full.pt" and folder.is_dir()  # the folder is created
    assert runtime.checkpoint_path("10-vae-d5", scale="quick") != path  # scales never mix
    monkeypatch.setenv("GDM_SCALE", "quick")
    monkeypatch.setenv("GDM_DEVICE", "cpu")
    rt = runtime.setup(seed=0, verbose=False)
    assert rt.checkpoint_path("run") == folder / "run-quick.pt"


def test_a_chapter_run_resumes_from_its_checkpoint(monkeypatch, tmp_path):
    # What a chapter does: fit(..., checkpoint_path=rt.checkpoint_path(name)); a second run of the
    # same cell finds the finished checkpoint and returns the same model without training.
    from gdmlib.training import fit

    monkeypatch.setenv("GDM_CHECKPOINT_DIR", str(tmp_path))
    data = torch.randn(64, 2)

    def run() -> tuple[torch.Tensor, list[float]]:
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        history = fit(
            model,
            data,
            steps=30,
            batch_size=16,
            loss=lambda batch: model(batch).square().mean(),
            log_every=10,
            generator=torch.Generator().manual_seed(1),
            checkpoint_path=runtime.checkpoint_path("test-run", scale="quick"),
        )
        return model.weight.detach().clone(), history.losses

    first_weight, first_losses = run()
    assert (tmp_path / "test-run-quick.pt").is_file()
    second_weight, second_losses = run()
    assert torch.equal(first_weight, second_weight) and first_losses == second_losses


@pytest.mark.parametrize(
    ("name", "scale", "error", "match"),
    [
        (5, "quick", TypeError, "name must be a str"),
        ("", "quick", ValueError, "name must be letters"),
        ("../escape", "quick", ValueError, "name must be letters"),
        ("run", "medium", ValueError, "scale must be 'quick' or 'full'"),
    ],
)
def test_checkpoint_path_rejects_bad_names(monkeypatch, tmp_path, name, scale, error, match):
    monkeypatch.setenv("GDM_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(error, match=match):
        runtime.checkpoint_path(name, scale=scale)
