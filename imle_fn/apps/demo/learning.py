"""The reference's learning example: fit a map's weights to a gold path with I-MLE and Adam.

All configurations run in lockstep and share one stream of Sum-of-Gamma noise: at every step one
``[S_max, H, W]`` draw is made and a configuration with ``S`` samples uses its first ``S`` samples
(scaled by its own temperatures). Each configuration therefore sees fresh, independent noise at every
step, exactly as in the reference; only the configurations are correlated with one another (common
random numbers), which makes them comparable and costs one noise draw per step instead of one per
configuration. The noise is the demo's bottleneck (``S_max * H * W * num_terms`` Gamma variates a step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from imle_fn.apps.demo.configs import REFERENCE_HYPER, Hyper, LearningConfig
from imle_fn.apps.demo.maps import sample_mean_hamming
from imle_fn.apps.timing import TimedSolver, Timer
from imle_fn.core.contract import Solver, SolverLike
from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.solving import map_solve
from imle_fn.estimators.implicit_mle import imle

__all__ = [
    "LearningTrace",
    "learn",
    "select_frames",
    "uniform_init",
]


@dataclass
class LearningTrace:
    """What one configuration's run recorded.

    Attributes:
        config: the configuration.
        losses: [steps] the sampled Hamming loss at every step.
        map_is_gold: [steps + 1] whether the noise-free MAP path of the weights after t updates
            equals the gold path (index 0: the initial weights).
        frame_steps: the steps t at which snapshots were taken.
        weights: [F, H, W] the weights after t updates, for t in ``frame_steps``.
        map_paths: [F, H, W] their noise-free MAP paths.
        gradients: [G, H, W] the I-MLE gradient computed at those weights (G = F, or F - 1 when the
            last snapshot is the final state, where no gradient is computed).
        theta: [H, W] the final weights.
    """

    config: LearningConfig
    losses: np.ndarray
    map_is_gold: np.ndarray
    frame_steps: list[int] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    map_paths: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    gradients: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    theta: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def first_gold_step(self) -> int | None:
        """The first t at which the MAP path of the weights equals gold (None if never)."""
        hits = np.flatnonzero(self.map_is_gold)
        return int(hits[0]) if hits.size else None

    @property
    def gold_at_end(self) -> bool:
        return bool(self.map_is_gold[-1])

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


def select_frames(trace: LearningTrace, steps: Sequence[int]) -> LearningTrace:
    """A copy of ``trace`` whose snapshots are only those taken at ``steps`` (each one recorded).

    Raises:
        ValueError: a step in ``steps`` has no snapshot in ``trace``.
    """
    pos = {t: i for i, t in enumerate(trace.frame_steps)}
    missing = [t for t in steps if t not in pos]
    if missing:
        raise ValueError(f"steps: no snapshot at step(s) {missing[:5]} in this trace")
    idx = [pos[t] for t in steps]
    return replace(
        trace,
        frame_steps=list(steps),
        weights=trace.weights[idx],
        map_paths=trace.map_paths[idx],
        gradients=trace.gradients[[i for i in idx if i < len(trace.gradients)]],
    )


def uniform_init(
    shape: Sequence[int], *, low: float = -0.1, high: float = 0.1, generator: torch.Generator
) -> torch.Tensor:
    """The reference's initial weights: uniform in ``[low, high]`` (seeded by ``generator``)."""
    return torch.empty(tuple(shape)).uniform_(low, high, generator=generator)


def learn(
    configs: Sequence[LearningConfig],
    gold: torch.Tensor,
    theta0: torch.Tensor,
    solver: Solver,
    *,
    hyper: Hyper = REFERENCE_HYPER,
    generator: torch.Generator,
    frame_steps: Sequence[int] = (),
    timer: Timer | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[LearningTrace]:
    """Fit the weights to ``gold`` with I-MLE and Adam, for every configuration in lockstep.

    Every configuration starts from ``theta0`` and minimises `sample_mean_hamming` of its sampled paths
    ``z = MAP(theta + tau_in * noise)`` ([S, H, W]) to ``gold``; the gradient is I-MLE's with the
    target ``alpha * theta - lam * dz`` plus ``tau_target * noise`` and no division by ``lam`` (the
    reference's scale). The configurations' weights are rows of one ``[C, H, W]`` tensor updated by
    one Adam (Adam acts elementwise, so this equals one Adam per configuration), and configurations
    with the same number of samples and the same temperature ratio share one `imle` call.

    Args:
        configs: the configurations to run.
        gold: [H, W] the gold path (0/1).
        theta0: [H, W] initial weights shared by every configuration, or [C, H, W] one per
            configuration (scores; not modified).
        solver: the MAP solver (a maximiser over paths).
        hyper: hyper-parameters; ``hyper.steps`` Adam updates are made.
        generator: the source of all noise.
        frame_steps: steps t (0 <= t <= steps) at which to snapshot weights, MAP paths and gradients.
        timer: optional; receives the time spent drawing noise (``"noise"``) and in the solver.
        progress: called with 1 after every step.

    Returns:
        One `LearningTrace` per configuration, in order.
    """
    if not configs:
        raise ValueError("configs: expected at least one configuration, got none")
    num = len(configs)
    if gold.dim() != 2 or theta0.shape[-2:] != gold.shape:
        raise ValueError(
            f"gold, theta0: expected gold [H, W] and theta0 [H, W] or [C, H, W] with the same H, W;"
            f" got gold {tuple(gold.shape)} and theta0 {tuple(theta0.shape)}"
        )
    if theta0.dim() == 3 and theta0.shape[0] != num:
        raise ValueError(
            f"theta0: expected {num} initial maps (one per config), got {theta0.shape[0]}"
        )
    timer = timer if timer is not None else Timer()
    timed = TimedSolver(solver, timer)
    steps = hyper.steps
    snap = {t for t in frame_steps if 0 <= t <= steps}
    groups = _groups(configs)
    s_max = max((c.num_samples for c in configs if c.input_temperature > 0), default=0)
    theta = theta0.detach().expand(num, *gold.shape).clone().requires_grad_(True)  # [C, H, W]
    optim = torch.optim.Adam([theta], lr=hyper.lr)
    losses = np.zeros((num, steps))
    is_gold = np.zeros((num, steps + 1), dtype=bool)
    weights: list[np.ndarray] = []
    map_paths: list[np.ndarray] = []
    gradients: list[np.ndarray] = []
    for t in range(steps + 1):
        map_path = map_solve(theta.detach(), timed)  # [C, H, W]
        is_gold[:, t] = (map_path == gold).flatten(1).all(1).cpu().numpy()
        if t in snap:
            weights.append(theta.detach().cpu().numpy().copy())
            map_paths.append(map_path.cpu().numpy().copy())
        if t == steps:
            break
        pool = None
        if s_max:
            with timer("noise"):
                pool = sum_of_gamma(
                    (s_max, *gold.shape), k=hyper.k, num_terms=hyper.num_terms, generator=generator
                )  # [S_max, H, W]
        optim.zero_grad()
        total = theta.new_zeros(())
        for (num_samples, ratio), index in groups.items():
            loss = _group_loss(theta, index, configs, num_samples, ratio, pool, gold, timed, hyper)
            losses[index, t] = loss.detach().cpu().numpy()
            total = total + loss.sum()
        total.backward()
        if t in snap and theta.grad is not None:
            gradients.append(theta.grad.detach().cpu().numpy().copy())
        optim.step()
        if progress is not None:
            progress(1)
    shape = (0, *gold.shape)
    stacks = [
        np.stack(a, axis=1) if a else np.zeros((num, *shape))
        for a in (weights, map_paths, gradients)
    ]
    return [
        LearningTrace(
            config=config,
            losses=losses[i],
            map_is_gold=is_gold[i],
            frame_steps=sorted(snap),
            weights=stacks[0][i],
            map_paths=stacks[1][i],
            gradients=stacks[2][i],
            theta=theta[i].detach().cpu().numpy().copy(),
        )
        for i, config in enumerate(configs)
    ]


def _groups(configs: Sequence[LearningConfig]) -> dict[tuple[int, float], list[int]]:
    """Configurations that can share one `imle` call: same S and same target/input temperature ratio.

    The noise handed to `imle` is pre-scaled by each configuration's input temperature, so the
    target temperature becomes the ratio. Noise-free configurations join ratio 1 (their noise is 0).
    """
    groups: dict[tuple[int, float], list[int]] = {}
    for i, c in enumerate(configs):
        ratio = c.target_temperature / c.input_temperature if c.input_temperature > 0 else 1.0
        groups.setdefault((c.num_samples, ratio), []).append(i)
    return groups


def _group_loss(
    theta: torch.Tensor,
    index: list[int],
    configs: Sequence[LearningConfig],
    num_samples: int,
    ratio: float,
    pool: torch.Tensor | None,
    gold: torch.Tensor,
    solver: SolverLike,
    hyper: Hyper,
) -> torch.Tensor:
    """The sampled Hamming loss of each configuration in ``index``: [G]."""
    theta_g = theta[index]  # [G, H, W]
    t_in = torch.tensor([configs[i].input_temperature for i in index], dtype=theta.dtype)
    if pool is None:
        noise = theta_g.new_zeros((num_samples, *theta_g.shape))  # [S, G, H, W]
    else:
        noise = pool[:num_samples, None] * t_in[:, None, None]  # [S, G, H, W]
    z = imle(
        theta_g,
        noise,
        solver,
        lam=hyper.lam,
        alpha=hyper.alpha,
        temperature=1.0,
        target_temperature=ratio,
        divide_by_lam=False,
    )  # [S, G, H, W]
    return sample_mean_hamming(z, gold)  # [G]
