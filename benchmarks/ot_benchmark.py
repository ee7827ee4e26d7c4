"""Time gdmlib.ot against POT on the same inputs; write the tables to benchmarks/RESULTS.md.

Two problems, both between n points of N(0, I_2) and n points of N((1, 0), I_2), uniform weights:

- exact W1 (Euclidean cost): ``gdmlib.ot.wasserstein(x, y)`` on torch tensors against
  ``ot.emd2(a, b, ot.dist(x, y, metric="euclidean"))`` on NumPy arrays and, like for like, on
  the same torch tensors (POT's torch backend, which also returns a differentiable cost), each
  timed end to end (cost matrix included). All run the same network simplex, POT's; POT's
  default cap of 1e5 pivots stops short of the optimum from about 3000 points per side, so it gets
  the same cap as gdmlib.
- entropic OT, squared Euclidean cost, the same eps and the same number of iterations, no early
  stopping: ``gdmlib.ot.sinkhorn`` (torch, log domain, float64 and float32) against POT's NumPy
  ``ot.sinkhorn2`` in the log domain (``method="sinkhorn_log"``), the same on torch tensors (POT's
  torch backend: the like-for-like comparison, on the GPU too) and, for reference, in the scaling
  domain (``method="sinkhorn"``: no exponential per entry and iteration, so faster, but its kernel
  exp(-C / eps) underflows for small eps).

The CPU runs use the same number of threads for torch and NumPy (``--threads``, 1 by default:
the comparison is then of the algorithms, not of the thread pools). On a machine with CUDA the
torch functions are also timed on the GPU.

The Sinkhorn runs use fewer iterations for larger n (the time per iteration is what is compared;
it does not depend on the iteration count), so that POT's log-domain solver, the slowest, keeps
the whole run to a few minutes.

Usage:
    python benchmarks/ot_benchmark.py            # about two minutes on two cores
    python benchmarks/ot_benchmark.py --exact-sizes 500 1000 --sinkhorn-sizes 500 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ot
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gdmlib.ot as got  # noqa: E402  (the checkout's gdmlib, installed or not)

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- ot_benchmark: start -->", "<!-- ot_benchmark: end -->"
EMD_MAX_ITER = 2_000_000_000


def best_times(
    fns: list[Callable[[], object]], repeats: int, device: torch.device | None = None
) -> list[tuple[float, object]]:
    """For each function, the fastest of ``repeats`` runs in seconds and its last result.

    The functions take turns (a, b, a, b, ...), so that a slow spell of a shared machine hits
    both alike.
    """
    times: list[list[float]] = [[] for _ in fns]
    results: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            results[k] = fn()
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            times[k].append(time.perf_counter() - start)
    return [(min(t), r) for t, r in zip(times, results)]


def best_time(
    fn: Callable[[], object], repeats: int, device: torch.device | None = None
) -> tuple[float, object]:
    return best_times([fn], repeats, device)[0]


def problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + np.array([1.0, 0.0])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> list[str]:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; "
        f"{threads} thread(s) for torch and NumPy",
        f"- load average at start (1, 5, 15 min): {load}",
        f"- GPU: {gpu}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"NumPy {np.__version__}, POT {ot.__version__}",
    ]


def exact_rows(sizes: list[int], repeats: Callable[[int], int]) -> list[str]:
    rows = []
    for n in sizes:
        x, y = problem(n)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        uniform = np.full(n, 1 / n)
        cost = ot.dist(x, y, metric="euclidean")
        uniform_t = torch.from_numpy(uniform)
        (t_pot, v_pot), (t_gdm, v_gdm), (t_solver, _), (t_pot_torch, v_pot_torch) = best_times(
            [
                lambda uniform=uniform, x=x, y=y: ot.emd2(
                    uniform, uniform, ot.dist(x, y, metric="euclidean"), numItermax=EMD_MAX_ITER
                ),
                lambda xt=xt, yt=yt: got.wasserstein(xt, yt),
                lambda uniform=uniform, cost=cost: ot.emd(
                    uniform, uniform, cost, numItermax=EMD_MAX_ITER
                ),
                lambda u=uniform_t, xt=xt, yt=yt: pot_emd2_torch(u, xt, yt),
            ],
            repeats(n),
        )
        assert abs(float(v_pot_torch) - float(v_pot)) < 1e-12
        # The work outside the shared solver, timed on its own (small, so far less noisy): gdmlib's
        # cost matrix and extraction of the plan's support, against POT's cost matrix.
        plan = ot.emd(uniform, uniform, cost, numItermax=EMD_MAX_ITER)
        (t_gdm_matrix, _), (t_support, _), (t_pot_matrix, _) = best_times(
            [
                lambda xt=xt, yt=yt: (
                    torch.cdist(xt, yt, compute_mode="donot_use_mm_for_euclid_dist").cpu().numpy()
                ),
                lambda plan=plan: plan.ravel()[np.flatnonzero(plan)],
                lambda x=x, y=y: ot.dist(x, y, metric="euclidean"),
            ],
            max(repeats(n), 5),
        )
        rows.append(
            f"| {n} | cpu | {1e3 * t_gdm:.0f} | {1e3 * t_pot:.0f} | {1e3 * t_pot_torch:.0f} | "
            f"{1e3 * t_solver:.0f} | {t_gdm / t_pot:.2f} | {t_gdm / t_pot_torch:.2f} | "
            f"{1e3 * t_gdm_matrix:.1f} | {1e3 * t_pot_matrix:.1f} | {1e3 * t_support:.1f} | "
            f"{abs(float(v_gdm) - float(v_pot)):.1e} |"
        )
        print(rows[-1], flush=True)
        if torch.cuda.is_available():
            device = torch.device("cuda")
            xc, yc = xt.to(device), yt.to(device)
            uc = uniform_t.to(device)
            (t_cuda, v_cuda), (t_pot_cuda, _) = best_times(
                [
                    lambda xc=xc, yc=yc: got.wasserstein(xc, yc),
                    lambda uc=uc, xc=xc, yc=yc: pot_emd2_torch(uc, xc, yc),
                ],
                repeats(n),
                device,
            )
            assert v_cuda.device.type == "cuda"
            rows.append(
                f"| {n} | cuda inputs | {1e3 * t_cuda:.0f} | {1e3 * t_pot:.0f} (cpu) | "
                f"{1e3 * t_pot_cuda:.0f} | {1e3 * t_solver:.0f} | "
                f"{t_cuda / t_pot:.2f} | {t_cuda / t_pot_cuda:.2f} | | | | "
                f"{abs(float(v_cuda) - float(v_pot)):.1e} |"
            )
            print(rows[-1], flush=True)
    return rows


def pot_emd2_torch(uniform: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """POT's exact W1 through its torch backend: torch tensors in, a torch scalar out."""
    return ot.emd2(uniform, uniform, ot.dist(x, y, metric="euclidean"), numItermax=EMD_MAX_ITER)


def pot_sinkhorn_log_torch(
    uniform: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float, k: int
) -> torch.Tensor:
    """POT's log-domain Sinkhorn through its torch backend (on the inputs' device)."""
    return ot.sinkhorn2(
        uniform, uniform, ot.dist(x, y), eps, method="sinkhorn_log", numItermax=k, stopThr=0.0
    )


def sinkhorn_rows(
    sizes: list[int], eps: float, iterations: Callable[[int], int], repeats: Callable[[int], int]
) -> list[str]:
    rows = []
    for n in sizes:
        x, y = problem(n)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        uniform = np.full(n, 1 / n)
        k, r = iterations(n), repeats(n)

        def pot(
            method: str,
            x: np.ndarray = x,
            y: np.ndarray = y,
            uniform: np.ndarray = uniform,
            k: int = k,
        ) -> Callable[[], object]:
            return lambda: ot.sinkhorn2(
                uniform, uniform, ot.dist(x, y), eps, method=method, numItermax=k, stopThr=0.0
            )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns that it did not converge: by design here
            t_potlog, v_potlog = best_time(pot("sinkhorn_log"), r)
            t_pot, _ = best_time(pot("sinkhorn"), r)
            uniform_t = torch.from_numpy(uniform)
            t_pot_torch, v_pot_torch = best_time(
                lambda u=uniform_t, xt=xt, yt=yt, k=k: pot_sinkhorn_log_torch(u, xt, yt, eps, k), r
            )
        t64, v64 = best_time(
            lambda xt=xt, yt=yt, k=k: got.sinkhorn(xt, yt, eps, n_iters=k, tol=0), r
        )
        t32, _ = best_time(
            lambda xt=xt, yt=yt, k=k: got.sinkhorn(xt.float(), yt.float(), eps, n_iters=k, tol=0), r
        )
        per_iter = lambda t, k=k: f"{1e3 * t / k:.2f}"  # noqa: E731
        rows.append(
            f"| {n} | cpu | {k} | {per_iter(t64)} | {per_iter(t32)} | {per_iter(t_potlog)} | "
            f"{per_iter(t_pot_torch)} | {per_iter(t_pot)} | "
            f"{t_potlog / t64:.1f}x | {t_pot_torch / t64:.1f}x | "
            f"{abs(float(v64) - float(v_potlog)) / float(v_potlog):.1e} | "
            f"{abs(float(v64) - float(v_pot_torch)) / float(v_pot_torch):.1e} |"
        )
        print(rows[-1], flush=True)
        if torch.cuda.is_available():
            device = torch.device("cuda")
            xc, yc = xt.to(device), yt.to(device)
            got.sinkhorn(
                xc.float(), yc.float(), eps, n_iters=2, tol=0
            )  # warm-up: CUDA context, kernels
            c64, _ = best_time(
                lambda xc=xc, yc=yc, k=k: got.sinkhorn(xc, yc, eps, n_iters=k, tol=0), r, device
            )
            c32, _ = best_time(
                lambda xc=xc, yc=yc, k=k: got.sinkhorn(
                    xc.float(), yc.float(), eps, n_iters=k, tol=0
                ),
                r,
                device,
            )
            uc = uniform_t.to(device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p64, _ = best_time(
                    lambda uc=uc, xc=xc, yc=yc, k=k: pot_sinkhorn_log_torch(uc, xc, yc, eps, k),
                    r,
                    device,
                )
            rows.append(
                f"| {n} | cuda | {k} | {per_iter(c64)} | {per_iter(c32)} | "
                f"{per_iter(t_potlog)} (cpu) | {per_iter(p64)} (cuda) | {per_iter(t_pot)} (cpu) | "
                f"{t_potlog / c64:.1f}x | {p64 / c64:.1f}x | | |"
            )
            print(rows[-1], flush=True)
    return rows


def write_section(text: str) -> None:
    section = f"{START}\n{text.rstrip()}\n{END}\n"
    if RESULTS.exists():
        current = RESULTS.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END) + "\n?", re.DOTALL)
        updated = (
            pattern.sub(lambda _: section, current)
            if pattern.search(current)
            else current.rstrip() + "\n\n" + section
        )
    else:
        updated = (
            "# Benchmarks\n\n"
            "Written by the scripts in this folder; rerun them to refresh a section.\n\n" + section
        )
    RESULTS.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exact-sizes", type=int, nargs="+", default=[500, 1000, 1500, 2000, 5000])
    parser.add_argument("--sinkhorn-sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument(
        "--iters", type=int, default=100, help="Sinkhorn iterations at n = 500, fewer above"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave RESULTS.md alone"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    exact_repeats = lambda n: 21 if n <= 1000 else 11 if n <= 2000 else 2  # noqa: E731
    sinkhorn_repeats = lambda n: 2 if n <= 1000 else 1  # noqa: E731
    # About constant work per run: the iterations shrink like 1 / n^2, from --iters at n = 500.
    iterations = lambda n: max(5, min(args.iters, round(args.iters * (500 / n) ** 2)))  # noqa: E731
    with threadpool_limits(args.threads):
        # Warm-up: first calls pay for imports and allocator growth.
        x, y = problem(50)
        got.wasserstein(torch.from_numpy(x), torch.from_numpy(y))
        got.sinkhorn(torch.from_numpy(x), torch.from_numpy(y), args.eps, n_iters=5, tol=0)
        ot.emd2([], [], ot.dist(x, y))
        info = machine_info(args.threads)
        print("\n".join(info), flush=True)
        exact_header = [
            "| n | inputs | gdmlib `wasserstein` (ms) | POT `dist` + `emd2`, NumPy (ms) | "
            "POT `dist` + `emd2`, torch backend (ms) | "
            "solver alone, `emd` (ms) | ratio gdmlib / POT NumPy | ratio gdmlib / POT torch | "
            "gdmlib cost matrix (ms) | "
            "POT `dist` (ms) | plan support, with autograd only (ms) | abs. difference |",
            "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        print("\n".join(exact_header), flush=True)
        exact = exact_rows(args.exact_sizes, exact_repeats)
        sinkhorn_header = [
            "| n | device | iterations | gdmlib float64 (ms/it) | gdmlib float32 (ms/it) | "
            "POT `sinkhorn_log`, NumPy (ms/it) | POT `sinkhorn_log`, torch backend (ms/it) | "
            "POT `sinkhorn`, scaling domain, NumPy (ms/it) | "
            "speed-up vs POT log NumPy | speed-up vs POT log torch | rel. difference NumPy | "
            "rel. difference torch |",
            "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        print("\n".join(sinkhorn_header), flush=True)
        sink = sinkhorn_rows(args.sinkhorn_sizes, args.eps, iterations, sinkhorn_repeats)
    elapsed = time.perf_counter() - started

    text = "\n".join(
        [
            "## Optimal transport: `gdmlib.ot` against POT",
            "",
            "Made by `python benchmarks/ot_benchmark.py` "
            f"({elapsed:.0f} s). Inputs: n points of N(0, I₂) against n points of N((1, 0), I₂), "
            "uniform weights, float64 unless stated. Times are the best of a few runs (exact: 21 "
            "up to n = 1000, 11 up to 2000, else 2, the three contenders taking turns; Sinkhorn: 2 "
            "up to n = 1000, else 1). The machine was shared with other jobs (see the load "
            "average), so expect ±20 % noise.",
            "",
            *info,
            "",
            "### Exact W₁ (network simplex, Euclidean cost)",
            "",
            "Both end to end from the point clouds (cost matrix included) with the same network "
            "simplex (POT's, the same pivot cap). POT is timed twice: on NumPy arrays, and on "
            "the same torch tensors as gdmlib through its torch backend (the like-for-like "
            "comparison: tensors in, a tensor out, which POT then makes differentiable). "
            "gdmlib computes the float64 cost matrix directly "
            "on the inputs' device (POT computes its own through a matrix product). The third "
            "column is the solver alone, `ot.emd` on a precomputed cost matrix: it is most of both "
            "totals, so the ratio mostly measures the machine's noise (on this shared machine, the "
            "same solve on the same input varies by ±30 % from run to run). What differs between "
            "the two is the work outside the solver, timed on its own (small, hence far less "
            "noisy): gdmlib's exact float64 cost matrix against POT's `ot.dist`, and, only when an "
            "input requires a gradient, gdmlib's extraction of the plan's support to rebuild a "
            "differentiable cost (not needed here, so not part of the gdmlib total).",
            "",
            *exact_header,
            *exact,
            "",
            f"### Sinkhorn (squared Euclidean cost, eps = {args.eps:g}, fixed iterations, "
            "no early stop)",
            "",
            "Time per iteration (one update of each potential). gdmlib runs in the log domain "
            "(log-sum-exp updates); the like-for-like reference is POT's log-domain "
            '`ot.sinkhorn2(..., method="sinkhorn_log")`, timed on NumPy arrays and on the same '
            "torch tensors as gdmlib (POT's torch backend; on a GPU, on the same device). "
            "POT's default scaling-domain "
            '`method="sinkhorn"` is listed for reference: two matrix-vector products per iteration '
            "instead of an exponential per entry, hence faster on a CPU, but its kernel "
            "exp(−C/ε) underflows to zero once C/ε exceeds about 700, where the log domain "
            "keeps working. "
            "gdmlib computes the same iterates as POT's log-domain solver (columns first, from "
            "zero potentials): the relative difference of the two costs after the same number of "
            "iterations is rounding.",
            "",
            *sinkhorn_header,
            *sink,
        ]
    )
    print(f"total {elapsed:.0f} s")
    if not args.no_write:
        write_section(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
