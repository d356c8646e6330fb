"""`run_demo`: every step of ``imle-fn demo`` in order, from the map to the learning summary.

One ``torch.Generator`` seeded with ``seed`` draws, in this order, the sampled paths' noise, the
initial weights and the learning noise, so a seed fixes every output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imle_fn.apps.demo.configs import DEFAULT_CONFIGS, REFERENCE_CONFIGS, Hyper, LearningConfig
from imle_fn.apps.demo.learning import LearningTrace, learn, select_frames, uniform_init
from imle_fn.apps.demo.maps import flat_map, reference_map
from imle_fn.apps.demo.reference_dijkstra import ReferenceDijkstra
from imle_fn.apps.timing import Timer
from imle_fn.core.contract import Solver
from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.solving import map_solve
from imle_fn.solvers.grid import GridShortestPath

__all__ = ["DemoSummary", "run_demo"]

PATHS_TEMPERATURE = 1.0
"""Noise temperature of paths.gif and distribution.gif (the reference example's)."""
GRADIENT_CONFIG_TEMPERATURES = (1.0, 1.0)
"""Input/target temperatures of the flat-map run shown in gradients.gif."""
LEARNING_SOLVERS: dict[str, Solver] = {
    "exact": GridShortestPath(),
    "reference": ReferenceDijkstra(),
}
"""Solvers the learning runs can use, by the name of ``imle-fn demo --learning-solver``."""


@dataclass
class DemoSummary:
    """What `run_demo` wrote and learned."""

    out: Path
    traces: list[LearningTrace]
    gradient_trace: LearningTrace
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """The learning summary as a Markdown table (one row per configuration)."""
        lines = [
            "| input/target temperature | samples | first step MAP = gold | MAP = gold at end "
            "| sampled Hamming loss, last step | mean of last 100 steps |",
            "|---|---|---|---|---|---|",
        ]
        for t in self.traces:
            c = t.config
            first = t.first_gold_step
            lines.append(
                f"| {c.input_temperature:g} / {c.target_temperature:g} | {c.num_samples} "
                f"| {first if first is not None else 'never'} | {'yes' if t.gold_at_end else 'NO'} "
                f"| {t.final_loss:.2f} | {t.losses[-100:].mean():.2f} |"
            )
        return "\n".join(lines)


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    quiet: bool = False,
    all_configs: bool = False,
    steps: int = 1100,
    num_paths: int = 100,
    gradient_samples: int = 10,
    frames: int = 56,
    gradient_frames: int = 100,
    learning_solver: str = "exact",
) -> DemoSummary:
    """Write every figure of the demo into ``out`` and return the learning summary.

    Args:
        out: output folder (created if missing).
        seed: seeds the one generator behind every random draw.
        quiet: hide progress bars.
        all_configs: learn all 15 reference configurations instead of the 10 with 1 and 10 samples.
        steps: Adam steps of every learning run (the reference: 1100).
        num_paths: sampled paths in paths.gif and distribution.gif (the reference: 100).
        gradient_samples: noise samples per step of the flat-map run behind gradients.gif.
        frames: frames of each learning animation.
        gradient_frames: frames of gradients.gif.
        learning_solver: the solver of the learning runs (gradients.gif and learning*): ``"exact"``
            (`GridShortestPath`: exact for the costs clamped at zero) or ``"reference"``
            (`ReferenceDijkstra`: the reference's Dijkstra run on the raw, possibly negative costs;
            with it all 15 reference configurations reach the gold path, see
            `imle_fn.apps.demo.reference_dijkstra`). The map, gold path and sampled paths use the exact
            solver either way (their costs are positive, where both agree).
    """
    from imle_fn.apps.demo import animations, figures, learning_animations

    out.mkdir(parents=True, exist_ok=True)
    hyper = Hyper(steps=steps)
    generator = torch.Generator().manual_seed(seed)
    if learning_solver not in LEARNING_SOLVERS:
        raise ValueError(
            f"learning_solver: expected one of {sorted(LEARNING_SOLVERS)}, got {learning_solver!r}"
        )
    solver = GridShortestPath()
    timer = Timer()
    files: list[Path] = []
    clock = time.perf_counter()

    theta = reference_map()
    gold = map_solve(theta, solver)  # [H, W]
    files.append(figures.save_map_png(theta.numpy(), out / "map.png"))
    files.append(figures.save_gold_png(theta.numpy(), gold.numpy(), out / "gold.png"))

    with timer("noise"):
        noise = sum_of_gamma(
            (num_paths, *theta.shape), k=hyper.k, num_terms=hyper.num_terms, generator=generator
        )  # [N, H, W]
    paths = map_solve(theta + PATHS_TEMPERATURE * noise, solver).numpy()  # [N, H, W]
    how = f"θ + {PATHS_TEMPERATURE:g} · Sum-of-Gamma noise (k = {hyper.k:g}, {hyper.num_terms} terms), then Dijkstra"
    files.append(
        animations.save_paths_gif(
            theta.numpy(), gold.numpy(), paths, out / "paths.gif", subtitle=how, quiet=quiet
        )
    )
    files.extend(
        animations.save_distribution_gif(
            theta.numpy(),
            paths,
            out / "distribution.gif",
            out / "distribution.png",
            subtitle=how,
            quiet=quiet,
        )
    )
    timer.seconds["figures (map, gold, paths, distribution)"] = (
        time.perf_counter() - clock - timer.seconds["noise"]
    )

    configs = list(REFERENCE_CONFIGS if all_configs else DEFAULT_CONFIGS)
    flat = LearningConfig(*GRADIENT_CONFIG_TEMPERATURES, gradient_samples)
    theta0 = torch.cat(
        [
            uniform_init(theta.shape, generator=generator).expand(len(configs), *theta.shape),
            flat_map()[None],
        ]
    )  # [C + 1, H, W]: the reference's initial weights for every config, then the flat map
    clock = time.perf_counter()
    learning = LEARNING_SOLVERS[learning_solver]
    traces = _learn([*configs, flat], gold, theta0, learning, hyper, generator, timer, quiet)
    timer.seconds["learning (all)"] = time.perf_counter() - clock
    *traces, flat_trace = traces

    clock = time.perf_counter()
    horizon = _gradient_horizon(flat_trace, steps)
    shown = select_frames(flat_trace, _even_steps(horizon, gradient_frames))
    subtitle = (
        f"gold path from the walled map; input/target noise temperature {flat.input_temperature:g}/"
        f"{flat.target_temperature:g}, {flat.num_samples} samples a step, λ = {hyper.lam:g}, Adam lr {hyper.lr:g}"
    )
    files.append(
        animations.save_gradients_gif(
            gold.numpy(), shown, out / "gradients.gif", subtitle=subtitle, quiet=quiet
        )
    )
    learning_steps = _early_steps(steps, frames)
    files.extend(
        learning_animations.save_learning_gifs(
            [select_frames(t, learning_steps) for t in traces], gold.numpy(), out, quiet=quiet
        )
    )
    files.append(figures.save_learning_png(traces, out / "learning.png"))
    timer.seconds["figures (gradients, learning)"] = time.perf_counter() - clock
    return DemoSummary(out, traces, flat_trace, files, timer.seconds)


def _learn(
    configs: list[LearningConfig],
    gold: torch.Tensor,
    theta0: torch.Tensor,
    solver: Solver,
    hyper: Hyper,
    generator: torch.Generator,
    timer: Timer,
    quiet: bool,
) -> list[LearningTrace]:
    from tqdm.auto import tqdm

    with tqdm(
        total=hyper.steps,
        desc=f"learning ({len(configs)} runs)",
        unit="step",
        disable=quiet,
        leave=False,
    ) as bar:
        return learn(
            configs,
            gold,
            theta0,
            solver,
            hyper=hyper,
            generator=generator,
            frame_steps=range(hyper.steps + 1),
            timer=timer,
            progress=bar.update,
        )


def _even_steps(last: int, count: int) -> list[int]:
    """About ``count`` evenly spaced steps from 0 to ``last`` (both included, no repeats)."""
    return sorted({round(s) for s in np.linspace(0, last, num=max(count, 2))})


def _early_steps(last: int, count: int) -> list[int]:
    """About ``count`` steps from 0 to ``last``, dense early (quadratic spacing), where learning moves."""
    return sorted({round(last * u * u) for u in np.linspace(0, 1, num=max(count, 2))})


def _gradient_horizon(trace: LearningTrace, steps: int) -> int:
    """Last step shown in gradients.gif: twice the step where the MAP path first equals gold."""
    first = trace.first_gold_step
    return steps - 1 if first is None else min(steps - 1, max(2 * first, 1))
