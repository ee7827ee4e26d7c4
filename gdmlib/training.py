r"""Guards shared by every training loop: a loss or a parameter that is no longer finite stops
training.

A NaN or an infinity in a loss poisons every parameter at the next step, and a loop that goes on
returns a model that silently computes NaN (or, worse, finite values from non-finite parameters).
Every training loop of gdmlib — adversarial (:func:`gdmlib.gan.train_adversarial`), critics
(:mod:`gdmlib.critics`), classifiers (:mod:`gdmlib.two_sample`), VAEs and flows
(:func:`fit`, re-exported as ``gdmlib.vae.fit``) — checks its losses *before* the backward pass with
:func:`finite_loss` and its parameters after the update with :func:`check_finite_parameters`, and
raises one error type, :class:`NonFiniteLossError`, naming the step and the quantity.

Checkpoint and exact resume go through one mechanism: :func:`rng_state` and :func:`set_rng_state`
capture and restore every global random generator (torch CPU and CUDA, NumPy, Python), and
:func:`save_checkpoint` / :func:`load_checkpoint` write atomically and read back a payload of
tensors and plain containers (``torch.load(weights_only=True)``).

Two small tools that chapters use around the loops: :func:`every` turns a recording function into
a callback that runs every ``k`` steps (the learning curves of chapters 03, 05 and 08), and
:func:`parameter_gradient_norms` measures which parameter groups a loss sends gradient to (the
straight-through and ``detach`` checks of chapter 12).

Example:
    >>> import torch
    >>> finite_loss(torch.tensor(0.5), step=3, name="critic")
    0.5
    >>> try:
    ...     finite_loss(torch.tensor(float("nan")), step=3, name="critic")
    ... except NonFiniteLossError as error:
    ...     print(error.step, error.loss)
    3 critic
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from gdmlib._checks import check_positive_int, check_positive_number

__all__ = [
    "FitHistory",
    "NonFiniteLossError",
    "check_finite_parameters",
    "every",
    "finite_loss",
    "fit",
    "load_checkpoint",
    "parameter_gradient_norms",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

_DEFAULT_HINT = "lower the learning rate or check the data for NaN/inf"


class NonFiniteLossError(FloatingPointError):
    """A loss (or a parameter) became NaN or infinite during training.

    Raised by the loops *before* the offending backward pass when a loss is not finite, so the
    models hold the last finite parameters; after the update when a parameter is not finite.

    Attributes:
        step: The step (0-based) at which it happened.
        loss: Which quantity: a loss name (``"critic"``, ``"generator"``, ``"training"``...) or
            ``"parameter NAME"``.
        value: The non-finite value.
    """

    def __init__(
        self, step: int, loss: str, value: float, detail: str = "", hint: str = _DEFAULT_HINT
    ) -> None:
        self.step, self.loss, self.value = step, loss, value
        what = loss if loss.startswith("parameter ") else f"{loss} loss"
        super().__init__(f"{what} is {value} at step {step}{detail}; {hint}")


def finite_loss(
    loss: object, step: int, name: str, detail: str = "", hint: str = _DEFAULT_HINT
) -> float:
    """The value of a scalar loss tensor, or :class:`NonFiniteLossError` if it is NaN or infinite.

    Args:
        loss: The loss, a tensor with one element.
        step: The training step, for the message.
        name: Which loss, for the message.
        detail: Appended after the step (e.g. ``" (critic update 1 of 5)"``).
        hint: What to try, appended to the message.

    Raises:
        ValueError: If ``loss`` is not a one-element tensor.
        NonFiniteLossError: If it is not finite.
    """
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"the {name} loss function must return a scalar tensor, got {loss!r:.80}")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(step, name, value, detail, hint)
    return value


def check_finite_parameters(module: nn.Module, step: int, hint: str = _DEFAULT_HINT) -> None:
    """Raise :class:`NonFiniteLossError` naming the first parameter of ``module`` that is not
    finite.

    One fused reduction over all parameters, so the common (finite) case costs one host sync.

    Raises:
        TypeError: If ``module`` is not an ``nn.Module``.
        NonFiniteLossError: If a parameter holds NaN or inf.

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> check_finite_parameters(layer, step=0)
        >>> with torch.no_grad():
        ...     _ = layer.bias.fill_(float("inf"))
        ...     try:
        ...         check_finite_parameters(layer, step=7)
        ...     except NonFiniteLossError as error:
        ...         print(error)
        parameter bias is inf at step 7; lower the learning rate or check the data for NaN/inf
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    parameters = [(name, p) for name, p in module.named_parameters() if p.numel()]
    if not parameters:
        return
    with torch.no_grad():
        all_finite = torch.stack([torch.isfinite(p).all() for _, p in parameters]).all()
    if bool(all_finite):
        return
    for name, parameter in parameters:
        bad = parameter.detach()[~torch.isfinite(parameter.detach())]
        if bad.numel():
            raise NonFiniteLossError(step, f"parameter {name}", float(bad.flatten()[0]), hint=hint)


def rng_state() -> dict[str, Any]:
    """The state of every global random generator: torch (CPU and CUDA), NumPy and Python.

    The dict holds only tensors, lists, tuples and primitives, so that a checkpoint holding it
    loads with ``torch.load(path, weights_only=True)``. Restore it with :func:`set_rng_state`.

    Returns:
        A dict with keys ``"torch"``, ``"cuda"`` (empty without CUDA), ``"numpy"`` and ``"python"``.

    Example:
        >>> import random
        >>> state = rng_state()
        >>> first = (torch.rand(2), np.random.rand(), random.random())
        >>> set_rng_state(state)
        >>> second = (torch.rand(2), np.random.rand(), random.random())
        >>> torch.equal(first[0], second[0]), first[1:] == second[1:]
        (True, True)
    """
    numpy_name, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            numpy_name,
            torch.from_numpy(np.asarray(numpy_keys, dtype=np.int64)),
            int(numpy_pos),
            int(numpy_has_gauss),
            float(numpy_gauss),
        ],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global random generators from :func:`rng_state`'s output.

    The CUDA states are restored only when as many CUDA devices are visible as were saved (a
    checkpoint written on a GPU machine still resumes on a CPU one, without the CUDA states).

    Args:
        state: A dict returned by :func:`rng_state` (possibly through a checkpoint).

    Raises:
        TypeError: If ``state`` is not a dict.
        ValueError: If a key (``"torch"``, ``"numpy"``, ``"python"``) is missing.
    """
    if not isinstance(state, dict):
        raise TypeError(
            f"state must be the dict returned by rng_state(), got {type(state).__name__}"
        )
    missing = [key for key in ("torch", "numpy", "python") if key not in state]
    if missing:
        raise ValueError(f"state lacks the keys {missing}; pass the dict returned by rng_state()")
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda", [])
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file, then ``os.replace``.

    An interruption (kill, power loss) never leaves a half-written checkpoint: the file at
    ``path`` is either the previous one or the new one.

    Args:
        path: Where to write (its folder must exist).
        payload: A dict of tensors, state dicts and plain containers (see :func:`rng_state`).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: If ``payload`` is not a dict.
        ValueError: If the folder of ``path`` does not exist.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_checkpoint(Path(folder) / "run.pt", {"step": 3, "w": torch.ones(2)})
        ...     load_checkpoint(path)["step"]
        3
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(
            f"the folder of the checkpoint path {str(path)!r} does not exist; create it first"
        )
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, onto the CPU, with
    ``weights_only=True``.

    Args:
        path: The checkpoint file.

    Returns:
        The payload dict (tensors on the CPU; ``load_state_dict`` moves them to a model's device).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict):
        raise ValueError(
            f"{str(path)!r} does not hold a checkpoint dict, got {type(payload).__name__}"
        )
    return payload


# ---------------------------------------------------------------------------------------------
# The generic training loop
# ---------------------------------------------------------------------------------------------


class FitHistory(NamedTuple):
    """Training losses of :func:`fit`: the mean loss over each window of ``log_every`` steps.

    Attributes:
        steps: The last step (1-based) of each window.
        losses: The mean training loss over that window.
    """

    steps: list[int]
    losses: list[float]


class _EpochBatches:
    """Minibatch indices: one random permutation per epoch, consumed ``batch_size`` at a time.

    The tail of a permutation shorter than a batch is dropped (every batch has ``batch_size``
    distinct points). The state (permutation, position, generator) goes into checkpoints.
    """

    def __init__(
        self, count: int, batch_size: int, generator: torch.Generator | None, device: torch.device
    ):
        self.count, self.batch_size, self.generator, self.device = (
            count,
            batch_size,
            generator,
            device,
        )
        self.order: Tensor | None = None
        self.position = 0

    def next(self) -> Tensor:
        if self.order is None or self.position + self.batch_size > self.count:
            self.order = torch.randperm(self.count, generator=self.generator).to(self.device)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return index

    def state(self) -> dict[str, Any]:
        return {
            "order": None if self.order is None else self.order.cpu(),
            "position": self.position,
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.order = None if state["order"] is None else state["order"].to(self.device)
        self.position = int(state["position"])
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])


def _module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    tensors = list(module.parameters()) + list(module.buffers())
    floating = [t.dtype for t in tensors if t.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    return device, (floating[0] if floating else None)


def fit(
    model: nn.Module,
    data: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    loss: Callable[[Tensor], Tensor] | None = None,
    log_every: int = 100,
    generator: torch.Generator | None = None,
    progress: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
) -> FitHistory:
    r"""Train ``model`` with Adam on minibatches of ``data``, minimising ``loss(batch)``.

    The loop shared by VAEs, flows, VQ-VAEs and dequantizers: minibatches are drawn without
    replacement, one random permutation of the data per epoch taken ``batch_size`` points at a
    time (the last partial batch of an epoch is dropped); each step evaluates the loss
    (``model.loss`` by default, e.g. :meth:`gdmlib.vae.model.VAE.loss`) and steps the optimizer.

    Guards: a NaN or infinite loss stops training *before* its backward pass, and a parameter
    that is not finite after an update stops it too, both with :class:`NonFiniteLossError`
    naming the step and the quantity (``"training"`` or ``"parameter NAME"``).

    Checkpoints: with ``checkpoint_path`` a path (e.g.
    :func:`gdmlib.runtime.checkpoint_path` in a chapter), the model, the optimizer, the history, the
    minibatch sampler and every random generator (:func:`rng_state`) are saved there every
    ``checkpoint_every`` steps and at the end; a later call with the same path and arguments
    resumes from it, and on the CPU the result is bitwise that of an uninterrupted run.

    Args:
        model: Module whose parameters are trained.
        data: Training set, shape ``(N, ...)``, on the model's device; floating data must have
            the model's floating dtype.
        steps: Optimizer steps (in all, counting the steps of a resumed checkpoint).
        batch_size: Minibatch size (at most ``N``).
        lr: Adam's learning rate, positive and finite.
        loss: ``batch -> scalar`` to minimise; ``model.loss`` when ``None``.
        log_every: Window of the recorded mean losses.
        generator: Draws the minibatches (on the CPU), for reproducibility.
        progress: Show a progress bar.
        checkpoint_path: Path of a checkpoint file to resume from (if it exists) and to write.
        checkpoint_every: Steps between checkpoints.

    Returns:
        The :class:`FitHistory`.

    Raises:
        TypeError: If ``model`` is not a module, has no ``loss`` and none is given, or ``data``
            is not a tensor or has another floating dtype than the model.
        ValueError: For an empty ``data``, ``data`` on another device, a bad ``steps``,
            ``batch_size``, ``lr`` or ``log_every``, or a checkpoint of another run.
        NonFiniteLossError: If the loss or a parameter stops being finite.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> class Mean(nn.Module):  # minimises E (x - m)^2: m goes to the data's mean
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.m = nn.Parameter(torch.zeros(()))
        ...     def loss(self, x):
        ...         return (x - self.m).square().mean()
        >>> model, x = Mean(), 3 + torch.randn(512)
        >>> history = fit(model, x, steps=400, batch_size=64, lr=0.05, log_every=200)
        >>> history.steps, abs(model.m.item() - x.mean().item()) < 0.1
        ([200, 400], True)
    """
    from gdmlib.runtime import (
        progress as progress_bar,
    )  # lazily: runtime is not needed by the guards

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(data, Tensor):
        raise TypeError(f"data must be a tensor of shape (N, ...), got {type(data).__name__}")
    if data.dim() < 1 or data.shape[0] == 0:
        raise ValueError(
            f"data must be a non-empty tensor of shape (N, ...), got shape {tuple(data.shape)}"
        )
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    log_every = check_positive_int("log_every", log_every)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if batch_size > data.shape[0]:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {data.shape[0]} data points; lower it"
        )
    lr = check_positive_number("lr", lr)
    device, dtype = _module_device_dtype(model)
    if data.device != device:
        raise ValueError(f"data is on {data.device} but the model on {device}; move one of them")
    if data.is_floating_point() and dtype is not None and data.dtype != dtype:
        raise TypeError(
            f"data has dtype {data.dtype} but the model's parameters {dtype}; convert one of them "
            f"(data.to({dtype}) or model.to({data.dtype}))"
        )
    objective = loss if loss is not None else getattr(model, "loss", None)
    if not callable(objective):
        raise TypeError(f"{type(model).__name__} has no loss(x) method: pass loss=...")
    # A loss with a state of its own (an annealing schedule) is checkpointed with the model.
    stateful_loss = (
        loss
        if loss is not None
        and not isinstance(loss, nn.Module)
        and callable(getattr(loss, "state_dict", None))
        and callable(getattr(loss, "load_state_dict", None))
        else None
    )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lr, foreach=True
    )  # fewer kernel launches per step
    history = FitHistory([], [])
    window: list[float] = []
    batches = _EpochBatches(data.shape[0], batch_size, generator, data.device)
    start = 0
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path)
        if state.get("kind") != "gdmlib.training.fit" or state["steps"] > steps:
            raise ValueError(
                f"{str(checkpoint_path)!r} is not a checkpoint of fit with at most {steps} steps"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = FitHistory(list(state["history_steps"]), list(state["history_losses"]))
        window = list(state["window"])
        batches.load(state["batches"])
        if stateful_loss is not None and "loss" in state:
            stateful_loss.load_state_dict(state["loss"])
        set_rng_state(state["rng"])
        start = state["steps"]

    def save(done: int) -> None:
        save_checkpoint(
            checkpoint_path,
            {
                "kind": "gdmlib.training.fit",
                "steps": done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history_steps": history.steps,
                "history_losses": history.losses,
                "window": window,
                "batches": batches.state(),
                "rng": rng_state(),
                **({"loss": stateful_loss.state_dict()} if stateful_loss is not None else {}),
            },
        )

    model.train()
    for step in progress_bar(range(start, steps), desc="training", disable=not progress):
        value = objective(data[batches.next()])
        window.append(finite_loss(value, step, "training"))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        check_finite_parameters(model, step)
        if (step + 1) % log_every == 0:
            history.steps.append(step + 1)
            history.losses.append(sum(window) / len(window))
            window = []
        if checkpoint_path is not None and (
            (step + 1) % checkpoint_every == 0 or step + 1 == steps
        ):
            save(
                step + 1
            )  # before the last partial window is closed: a resumed run closes it later
    model.eval()
    if window:
        return FitHistory(history.steps + [steps], history.losses + [sum(window) / len(window)])
    return history


def every(
    period: int,
    callback: Callable[[int, Any], None],
    *,
    offset: int = 0,
    final_step: int | None = None,
) -> Callable[[int, Any], None]:
    r"""A training-loop callback that calls ``callback(step, history)`` only every ``period`` steps.

    It fires at steps :math:`o, o + k, o + 2k, \dots` (``o = offset``, ``k = period``), and also at
    ``final_step`` if given, so that a learning curve includes the end of training. With steps
    counted from 0, ``offset=period - 1`` records after :math:`k, 2k, \dots` completed steps.

    Args:
        period: The number of steps between two calls (positive).
        callback: Called as ``callback(step, history)``, the signature of every gdmlib loop's
            callback (:func:`gdmlib.gan.train_adversarial`).
        offset: The first step at which it fires (non-negative).
        final_step: A step at which it also fires, e.g. ``steps - 1``.

    Returns:
        The callback to pass to the loop.

    Raises:
        TypeError: If ``callback`` is not callable, or an argument is not an int.
        ValueError: If ``period`` is below 1, or ``offset``/``final_step`` below 0.

    Example:
        >>> steps = []
        >>> record = every(4, lambda step, history: steps.append(step), final_step=9)
        >>> for step in range(10):
        ...     record(step, None)
        >>> steps
        [0, 4, 8, 9]
    """
    period = check_positive_int("period", period)
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    offset = check_positive_int("offset", offset, minimum=0)
    if final_step is not None:
        final_step = check_positive_int("final_step", final_step, minimum=0)

    def periodic(step: int, history: Any) -> None:
        if (step >= offset and (step - offset) % period == 0) or step == final_step:
            callback(step, history)

    return periodic


def parameter_gradient_norms(
    loss: Tensor, groups: dict[str, list[nn.Parameter] | tuple[nn.Parameter, ...]]
) -> dict[str, float]:
    r"""The Euclidean norm of :math:`\partial\,\mathrm{loss} / \partial \theta_g` for each group
    :math:`g` of parameters: which parts of a model a loss trains.

    A group the loss does not depend on (through ``detach`` or a straight-through estimator) gets
    exactly 0. The graph of ``loss`` is kept, so several groupings or losses can share a forward
    pass. Used in chapter 12 for the vector quantiser's losses.

    Args:
        loss: A scalar tensor with a graph.
        groups: Group name -> its parameters (each a tensor with ``requires_grad``).

    Returns:
        Group name -> gradient norm, as floats.

    Raises:
        TypeError: If ``loss`` is not a tensor, or a group holds something else than tensors.
        ValueError: If ``loss`` is not a scalar with a graph, or a group is empty.

    Example:
        >>> import torch
        >>> a, b = torch.nn.Parameter(torch.tensor([3.0])), torch.nn.Parameter(torch.tensor([1.0]))
        >>> parameter_gradient_norms((2 * a).sum() + b.detach().sum(), {"a": [a], "b": [b]})
        {'a': 2.0, 'b': 0.0}
    """
    if not isinstance(loss, Tensor):
        raise TypeError(f"loss must be a torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1 or not loss.requires_grad:
        raise ValueError(
            "loss must be a scalar tensor that requires grad (a graph to differentiate)"
        )
    if not isinstance(groups, dict) or not groups:
        raise ValueError("groups must be a non-empty dict: group name -> list of parameters")
    flat: list[Tensor] = []
    sizes: dict[str, int] = {}
    for name, parameters in groups.items():
        parameters = list(parameters)
        if not parameters:
            raise ValueError(f"group {name!r} has no parameters")
        for parameter in parameters:
            if not isinstance(parameter, Tensor) or not parameter.requires_grad:
                raise TypeError(f"group {name!r} must hold tensors that require grad")
        flat.extend(parameters)
        sizes[name] = len(parameters)
    gradients = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
    norms: dict[str, float] = {}
    start = 0
    for name, size in sizes.items():
        squares = [
            g.double().square().sum() for g in gradients[start : start + size] if g is not None
        ]
        norms[name] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
        start += size
    return norms
