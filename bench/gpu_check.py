"""GPU check: run the CUDA tests, then time device-native work against CPU work plus copies.

Run on a machine with a CUDA GPU and a CUDA build of torch, from the repository root::

    python -m bench.gpu_check              # the CUDA tests, then the three tables (a few minutes)
    python -m bench.gpu_check --no-tests   # the tables only
    python -m bench.gpu_check --quick      # fewer sizes and repeats (a smoke run)

Without CUDA it prints "CUDA not available: nothing measured" and exits 0. Otherwise:

1. The CUDA tests: ``pytest tests -k cuda`` (the tests that skip without CUDA all have ``cuda`` in
   their names: keep it so for new ones), or the whole suite with ``--all-tests``; pytest's exit
   status becomes this script's.
2. Noise, ``[shape]`` drawn on the GPU (`imle_fn.sum_of_gamma` with 10 and 100 terms,
   `imle_fn.gumbel`, `imle_fn.gaussian`, a CUDA generator) against the same call with a CPU
   generator (drawn on the CPU, then copied to the GPU, as imle_fn does for a CPU generator).
3. Grid shortest paths, a ``[B, K, K]`` batch of scores on the GPU: ``GridShortestPath(
   backend="torch")`` (on the GPU) against ``GridShortestPath()`` (the Numba solver; the scores are
   copied to the host and the paths back).
4. One Warcraft training step (K = 12, batch 70: `imle_fn.apps.warcraft`'s ``CostNet`` forward,
   I-MLE with lambda = 50 on the Hamming loss, backward, Adam step) on the GPU with either solver, with
   and without Sum-of-Gamma noise (10 samples, k = 12, 10 terms) drawn on the GPU or the CPU, and
   the whole step on the CPU for reference.

Every figure is a median over ``--repeats`` timed calls after ``--warmup`` untimed ones, timed with
CUDA events after a ``torch.cuda.synchronize()`` (``time.perf_counter`` when run on the CPU, as
the smoke test tests/test_gpu_check.py does).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from imle_fn import GridShortestPath, gaussian, gumbel, imle, sum_of_gamma

ROOT = Path(__file__).resolve().parent.parent
NOISE_SHAPES: tuple[tuple[int, ...], ...] = ((10, 70, 12, 12), (100, 16, 16))
GRID_SIZES: tuple[int, ...] = (12, 18, 24, 30, 100)
BATCHES: tuple[int, ...] = (70, 1024)
NO_CUDA = "CUDA not available: nothing measured"


@dataclass
class Settings:
    """How to time: the device, untimed warm-up calls and timed repeats (the median is kept)."""

    device: torch.device
    warmup: int = 3
    repeats: int = 20


def median_ms(fn: Callable[[], object], settings: Settings) -> float:
    """Median milliseconds of ``fn()`` over ``settings.repeats`` calls, warm-up excluded."""
    cuda = settings.device.type == "cuda"
    for _ in range(settings.warmup):
        fn()
    times = []
    for _ in range(settings.repeats):
        if cuda:
            torch.cuda.synchronize(settings.device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.1f}x" if fast > 0 else "-"


def noise_table(settings: Settings, shapes: Sequence[tuple[int, ...]]) -> str:
    """Noise drawn on the device (a generator there) vs drawn on the CPU and copied there."""
    device = settings.device
    on_device = torch.Generator(device=device).manual_seed(0)
    on_cpu = torch.Generator().manual_seed(0)
    samplers: dict[str, Callable[[tuple[int, ...], torch.Generator], torch.Tensor]] = {
        "sum_of_gamma k=12, 10 terms": lambda s, g: sum_of_gamma(
            s, k=12.0, num_terms=10, generator=g, device=device
        ),
        "sum_of_gamma k=12, 100 terms": lambda s, g: sum_of_gamma(
            s, k=12.0, num_terms=100, generator=g, device=device
        ),
        "gumbel": lambda s, g: gumbel(s, generator=g, device=device),
        "gaussian": lambda s, g: gaussian(s, generator=g, device=device),
    }
    rows = []
    for shape in shapes:
        for name, draw in samplers.items():
            native = median_ms(functools.partial(draw, shape, on_device), settings)
            copied = median_ms(functools.partial(draw, shape, on_cpu), settings)
            rows.append(
                [name, str(list(shape)), f"{native:.3f}", f"{copied:.3f}", ratio(copied, native)]
            )
    header = ["noise (float32)", "shape", f"on {device.type} ms", "CPU + copy ms", "speed-up"]
    return table(header, rows)


def solver_table(settings: Settings, sizes: Sequence[int], batches: Sequence[int]) -> str:
    """``GridShortestPath(backend="torch")`` on the device vs the Numba solver plus copies."""
    device = settings.device
    torch_solver = GridShortestPath(backend="torch")
    numba_solver = GridShortestPath()
    rows = []
    for size in sizes:
        for batch in batches:
            g = torch.Generator().manual_seed(size * 7919 + batch)
            theta = -(torch.rand(batch, size, size, generator=g) * 9.0 + 0.5).to(device)
            same = torch.equal(torch_solver(theta).cpu(), numba_solver(theta).cpu())
            native = median_ms(functools.partial(torch_solver, theta), settings)
            numba = median_ms(functools.partial(numba_solver, theta), settings)
            rows.append(
                [
                    f"{size}x{size}",
                    str(batch),
                    f"{native:.2f}",
                    f"{numba:.2f}",
                    f"{numba / native:.2f}",
                    "yes" if same else "NO",
                ]
            )
    header = [
        "grid",
        "batch",
        f"torch solver on {device.type} ms",
        "Numba + copies ms",
        "Numba / torch",
        "same paths",
    ]
    return table(header, rows)


def warcraft_table(
    settings: Settings, *, grid: int = 12, batch: int = 70, with_cpu_step: bool = True
) -> str:
    """One Warcraft training step (``batch`` maps of ``grid x grid``) on the device, by solver and
    noise; with ``with_cpu_step``, also the whole step on the CPU."""
    from imle_fn.apps.warcraft.generator import generate_maps
    from imle_fn.apps.warcraft.methods import batch_mean_hamming
    from imle_fn.apps.warcraft.model import CostNet

    maps = generate_maps(batch, grid, seed=0)
    images = torch.from_numpy(maps.images).permute(0, 3, 1, 2).float().div(255.0)  # [B, 3, 8K, 8K]
    paths = torch.from_numpy(maps.paths).float()  # [B, K, K]
    num_samples, k, num_terms = 10, float(grid), 10

    def step_ms(device: torch.device, solver: GridShortestPath, noise_on: str | None) -> float:
        torch.manual_seed(0)
        net = CostNet(grid).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
        x, y = images.to(device), paths.to(device)
        generator = None
        if noise_on is not None:
            generator = torch.Generator(device=noise_on).manual_seed(0)

        def step() -> None:
            theta = -net(x)  # [B, K, K] scores
            noise = None
            if generator is not None:
                noise = sum_of_gamma(
                    (num_samples, *theta.shape),
                    k=k,
                    num_terms=num_terms,
                    generator=generator,
                    device=device,
                )  # [S, B, K, K]
            z = imle(theta, noise, solver, lam=50.0)  # [B, K, K] or [S, B, K, K]
            loss = batch_mean_hamming(z.mean(0) if noise is not None else z, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return median_ms(step, Settings(device, settings.warmup, max(1, settings.repeats // 2)))

    device = settings.device
    cpu = torch.device("cpu")
    torch_solver, numba_solver = GridShortestPath(backend="torch"), GridShortestPath()
    cases: list[tuple[str, torch.device, GridShortestPath, str | None]] = [
        ("MAP-MAP (no noise)", device, numba_solver, None),
        ("MAP-MAP (no noise)", device, torch_solver, None),
        (f"{num_samples} samples, noise drawn on {device.type}", device, torch_solver, device.type),
        (f"{num_samples} samples, noise drawn on the CPU + copy", device, torch_solver, "cpu"),
        (f"{num_samples} samples, noise drawn on {device.type}", device, numba_solver, device.type),
    ]
    if with_cpu_step and device.type != "cpu":
        cases.append(("MAP-MAP (no noise), everything on the CPU", cpu, numba_solver, None))
    rows = []
    for label, where, solver, noise_on in cases:
        ms = step_ms(where, solver, noise_on)
        solver_name = "torch" if solver.backend == "torch" else "Numba"
        rows.append([label, where.type, solver_name, f"{ms:.1f}"])
    header = [f"Warcraft step, K={grid}, batch {batch}, I-MLE lam=50", "device", "solver", "ms"]
    return table(header, rows)


def run_cuda_tests(all_tests: bool = False) -> int:
    """``pytest tests -k cuda`` (the tests that skip without CUDA), or with ``all_tests`` the whole
    suite; returns pytest's exit status."""
    command = [sys.executable, "-m", "pytest", "tests", "-q", "-rs"]
    if not all_tests:
        command += ["-k", "cuda"]
    print("$ " + " ".join(command[2:]), flush=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def describe(device: torch.device) -> str:
    """The machine: GPU, torch and CUDA versions, CPU count."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    cuda_version = torch.version.cuda or "none"
    return (
        f"GPU: {gpu}; torch {torch.__version__} (CUDA {cuda_version}); "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; return the exit status (that of the CUDA tests, 0 without CUDA)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    parser.add_argument("--all-tests", action="store_true", help="run the whole suite on the GPU")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per figure")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per figure")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"{NO_CUDA} (this needs a CUDA GPU and a CUDA build of torch).")
        return 0
    device = torch.device("cuda", torch.cuda.current_device())
    status = 0 if args.no_tests else run_cuda_tests(args.all_tests)
    settings = Settings(device, args.warmup, 5 if args.quick else args.repeats)
    sizes = (12, 30, 100) if args.quick else GRID_SIZES
    print(describe(device))
    print(f"median ms over {settings.repeats} calls after {settings.warmup} warm-up calls\n")
    print(noise_table(settings, NOISE_SHAPES), end="\n\n", flush=True)
    print(solver_table(settings, sizes, BATCHES), end="\n\n", flush=True)
    print(warcraft_table(settings), flush=True)
    if status != 0:
        print(f"\nthe tests FAILED (pytest exit status {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
