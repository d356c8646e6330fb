"""Training and evaluation on the Warcraft look-alike, one method at a time.

The paper's setting (I-MLE, Niepert et al. 2021, Table 2) as defaults: Adam, learning rate 5e-4,
batch 70, learning rate divided by 10 at 60% and 80% of the epochs (30 and 40 of 50), Hamming loss
averaged over the batch. The solver-based methods share `CostNet`; ``baseline`` is `PathResNet18`
trained with a per-cell binary cross-entropy.

With ``augment=True`` (NOT in the paper; off by default) every training map is shown in one of the
four symmetries of the square that keep the corner pair {(0, 0), (K-1, K-1)}: identity, transpose,
rotation by 180 degrees, anti-transpose, drawn per map and per epoch from the run's generator. These
map the 8-neighbour grid graph onto itself and fix the two ends, so the transformed label is a
shortest path of the transformed costs (both ends counted, so reversal keeps the cost). The costs
take five values, so ties between shortest paths are common; the label of a transformed map is
therefore recomputed by the generator's solver on the transformed costs, so that ties are broken
the same way for every map the network sees (and as in the test labels).

Timing per epoch is split into *solver* (time inside the MAP solver), *noise* (drawing perturbations),
and *network* (everything else in the training steps: forward, backward, optimiser); evaluation is
timed separately and counts its own solver calls.

Checkpoints (``train(..., checkpoint=path)``): after every epoch the whole training state is written
to ``path`` (`torch.save` to ``path.tmp``, then `os.replace`, so a kill mid-write leaves the previous
checkpoint intact): the network (with batch-norm statistics), Adam's and the learning-rate schedule's
state, the estimator state (AIMLE's beta), the epoch reached, the metrics of every epoch so far, and
every random state the rest of the run draws from (the run's `torch.Generator`, which orders the
batches, draws the augmentation and the Fenchel-Young noise, and torch's global generator). It also
stores the configuration and a fingerprint of the maps. ``resume=True`` continues from the next epoch,
bit-identically to an uninterrupted run on the same machine and torch threads; a finished run keeps
no checkpoint (it is deleted after the last epoch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imle_fn.apps.timing import Timer
from imle_fn.apps.warcraft.methods import METHODS, make_loss
from imle_fn.apps.warcraft.model import CostNet, PathResNet18

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout `train` writes; a checkpoint of another version is refused."""

# Settings that do not change what a run computes: ignored when a resumed run is compared.
_DISPLAY_ONLY = ("progress",)

__all__ = [
    "CHECKPOINT_FORMAT",
    "EpochMetrics",
    "TrainConfig",
    "config_differences",
    "corner_symmetry",
    "evaluate_paths",
    "path_is_valid",
    "train",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        method: one of `imle_fn.apps.warcraft.methods.METHODS`.
        epochs: number of passes over the training maps.
        batch_size: maps per step (the paper: 70).
        lr: Adam learning rate (the paper: 5e-4).
        milestones: fractions of ``epochs`` after which the learning rate is divided by 10.
        lam_imle: I-MLE's lambda (the paper: 50, MAP-MAP without noise).
        lam_dbb: blackbox differentiation's lambda (the paper: 20).
        sigma_fy: Fenchel-Young (DPO) noise scale (the paper: 0.01).
        num_samples: noise samples per map for the perturbation-based methods (fy).
        seed: seeds the network's initialisation, the batch order and the noise.
        eval_batch_size: maps per evaluation batch.
        progress: show tqdm progress bars.
        augment: show each training map in a random corner-preserving symmetry (see the module
            docstring; not in the paper).
    """

    method: str = "imle"
    epochs: int = 50
    batch_size: int = 70
    lr: float = 5e-4
    milestones: tuple[float, ...] = (0.6, 0.8)
    lam_imle: float = 50.0
    lam_dbb: float = 20.0
    sigma_fy: float = 0.01
    num_samples: int = 1
    seed: int = 0
    eval_batch_size: int = 100
    progress: bool = True
    augment: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        for name in ("epochs", "batch_size", "num_samples", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")


@dataclasses.dataclass
class EpochMetrics:
    """What one epoch produced (accuracies in [0, 1], times in seconds)."""

    epoch: int
    train_loss: float
    test_cost_optimal: float
    test_exact: float
    time_network: float
    time_solver: float
    time_noise: float
    time_eval: float
    solver_instances_train: int
    solver_instances_eval: int


def path_is_valid(z: np.ndarray) -> bool:
    """Whether the 0/1 grid ``z: [K, K]`` connects (0, 0) to (K-1, K-1) through 8-neighbours in z."""
    k0, k1 = z.shape
    if not (z[0, 0] and z[k0 - 1, k1 - 1]):
        return False
    seen = np.zeros(z.shape, dtype=bool)
    seen[0, 0] = True
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        for a in range(max(i - 1, 0), min(i + 2, k0)):
            for b in range(max(j - 1, 0), min(j + 2, k1)):
                if z[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    stack.append((a, b))
    return bool(seen[k0 - 1, k1 - 1])


def evaluate_paths(
    z: np.ndarray, paths: np.ndarray, costs: np.ndarray, *, check_valid: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Score predicted paths against the labels.

    Args:
        z: ``[N, K, K]`` predicted 0/1 paths.
        paths: ``[N, K, K]`` label paths (shortest under ``costs``).
        costs: ``[N, K, K]`` true costs (> 0).
        check_valid: also require each prediction to connect the corners (needed when the
            prediction does not come from a path solver).

    Returns:
        ``(cost_optimal [N] bool, exact [N] bool)``: the prediction's true cost is within 1e-6
        (relative) of the label's (and it is a valid path), and the prediction equals the label.
    """
    z = np.asarray(z) > 0.5
    optimum = (paths * costs).sum(axis=(1, 2), dtype=np.float64)  # [N]
    cost = (z * costs).sum(axis=(1, 2), dtype=np.float64)  # [N]
    optimal = np.abs(cost - optimum) <= 1e-6 * optimum
    if check_valid:
        optimal &= np.array([path_is_valid(zi) for zi in z], dtype=bool)
    exact = (z == (paths > 0.5)).all(axis=(1, 2))
    return optimal, exact


def corner_symmetry(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Apply one of the four corner-preserving symmetries of the square to each item of a batch.

    Args:
        x: ``[B, ..., S, S]`` (images ``[B, 3, 8K, 8K]`` or paths ``[B, K, K]``).
        which: ``[B]`` integers in {0, 1, 2, 3}: bit 0 transposes, bit 1 rotates by 180 degrees
            (0 identity, 1 transpose, 2 rotation, 3 anti-transpose).

    Returns:
        ``[B, ..., S, S]``, a new tensor.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x: expected square trailing dims, got shape {tuple(x.shape)}")
    if which.shape != x.shape[:1]:
        raise ValueError(f"which: expected shape {tuple(x.shape[:1])}, got {tuple(which.shape)}")
    view = (-1,) + (1,) * (x.dim() - 1)
    out = torch.where((which % 2 == 1).view(view), x.transpose(-1, -2), x)
    return torch.where((which // 2 == 1).view(view), out.flip(-2, -1), out)


def _symmetric_labels(costs: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
    """``costs, paths: [N, K, K]`` -> ``[4, N, K, K]``: the shortest path of each symmetry of the costs.

    Entry ``w`` is in the frame of ``corner_symmetry(., w)``; entry 0 is ``paths`` itself.
    """
    from imle_fn.solvers.grid import shortest_path

    out = [paths]
    for w in range(1, 4):
        which = torch.full((costs.shape[0],), w)
        z = np.asarray(shortest_path(corner_symmetry(costs, which).numpy()))
        out.append(torch.from_numpy(z).to(paths.dtype).reshape(paths.shape))
    return torch.stack(out)


def _predict(
    model: torch.nn.Module, images: torch.Tensor, method: str, timer: Timer, batch: int
) -> np.ndarray:
    """``[N, 3, H, W]`` images -> ``[N, K, K]`` predicted 0/1 paths (solver time goes to timer)."""
    from imle_fn.solvers.grid import shortest_path

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            x = images[start : start + batch].contiguous(memory_format=torch.channels_last)
            y = model(x)  # [b, K, K]
            if method == "baseline":
                out.append((y > 0).to(torch.uint8).numpy())
            else:
                with timer("solver"):
                    out.append(np.asarray(shortest_path(y.numpy())).astype(np.uint8))
                timer.instances += y.shape[0]
    model.train()
    return np.concatenate(out)


def _batches(num: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(num, generator=generator)
    return [order[i : i + size] for i in range(0, num, size)]


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The fields in which two run descriptions differ, as ``"name: X stored, Y now"`` lines.

    Args:
        stored: the description saved with a run (a checkpoint's or a run JSON's).
        current: the description of the run asked for now.

    Returns:
        One line per differing key (a key missing on one side counts as differing), sorted by key.
        Values are compared after a JSON-like normalisation (tuples as lists).
    """

    def norm(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [norm(v) for v in value]
        if isinstance(value, Mapping):
            return {k: norm(v) for k, v in value.items()}
        return value

    missing = "(missing)"
    lines = []
    for key in sorted(set(stored) | set(current)):
        old, new = norm(stored.get(key, missing)), norm(current.get(key, missing))
        if old != new:
            lines.append(f"{key}: {old!r} stored, {new!r} now")
    return lines


def _run_key(config: TrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the stored one (every setting but the display ones)."""
    key = dataclasses.asdict(config)
    for name in _DISPLAY_ONLY:
        del key[name]
    return key


def _fingerprint(data: tuple[torch.Tensor, ...]) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes (the maps a run was trained on)."""
    digest = hashlib.sha256()
    for tensor in data:
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{tuple(array.shape)} {array.dtype};".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _temporary(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".tmp")


def _save_checkpoint(checkpoint: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: to ``checkpoint.tmp`` first, then renamed over ``checkpoint``."""
    tmp = _temporary(checkpoint)
    torch.save(state, tmp)
    os.replace(tmp, checkpoint)


def _load_checkpoint(
    checkpoint: Path, config: TrainConfig, data: Mapping[str, str]
) -> dict[str, Any]:
    """Read ``checkpoint`` and check that it belongs to this run (see `train`'s Raises)."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: one clear message
        raise ValueError(
            f"checkpoint {checkpoint}: cannot be read ({type(error).__name__}: {error}); "
            "delete it to start this run over"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"checkpoint {checkpoint}: expected format {CHECKPOINT_FORMAT}, got {found!r}; "
            "delete it to start this run over"
        )
    differences = config_differences(
        {**state["config"], **state["data"]}, {**_run_key(config), **data}
    )
    if differences:
        maps = any(line.startswith(("train_data:", "test_data:")) for line in differences)
        raise ValueError(
            f"checkpoint {checkpoint}: made by a different run, cannot resume: "
            + "; ".join(differences)
            + (" (the maps differ: --grid, --train, --test or --data-seed)" if maps else "")
            + "; rerun without --resume to start over"
        )
    return state


def train(
    config: TrainConfig,
    train_data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    on_epoch: Callable[[EpochMetrics], Any] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_resume: Callable[[list[EpochMetrics]], Any] | None = None,
) -> list[EpochMetrics]:
    """Train one method and evaluate it on the test maps after every epoch.

    Args:
        config: the run's settings.
        train_data: ``(images [N, 3, 8K, 8K] float32 normalised, costs [N, K, K], paths [N, K, K])``.
        test_data: the same for the test maps.
        on_epoch: called with each epoch's metrics as soon as they are known (after the epoch's
            checkpoint is written); not called again for the epochs a resumed run restores.
        checkpoint: where to keep the training state after every epoch (see the module docstring);
            a stale file there is removed when a run starts afresh, and the file is deleted once
            the last epoch is done and ``on_epoch`` has returned. None: no checkpoint.
        resume: continue from ``checkpoint`` if that file exists (else start afresh); a checkpoint
            that holds every epoch trains nothing and returns its metrics.
        on_resume: called once with the restored epochs' metrics when a run resumes.

    Returns:
        One `EpochMetrics` per epoch (the restored ones included).

    Raises:
        ValueError: ``resume`` without ``checkpoint``; a checkpoint that cannot be read, is of
            another format, or was made with other settings or other maps (the message names
            each differing field).
        FloatingPointError: the training loss of an epoch is not finite.
    """
    from tqdm.auto import tqdm

    if resume and checkpoint is None:
        raise ValueError("resume: needs a checkpoint path to resume from, got checkpoint=None")
    images, costs, paths = train_data
    test_images, test_costs, test_paths = test_data
    grid = int(paths.shape[-1])
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = PathResNet18(grid) if config.method == "baseline" else CostNet(grid)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # 2x faster on CPU
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    milestones = sorted({max(1, round(f * config.epochs)) for f in config.milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    timer = Timer()
    loss_fn = make_loss(config, timer, generator)
    if config.augment:
        sym_paths = _symmetric_labels(costs, paths)  # [4, N, K, K]
    history: list[EpochMetrics] = []
    if checkpoint is not None:
        data = {"train_data": _fingerprint(train_data), "test_data": _fingerprint(test_data)}
        if resume and checkpoint.exists():
            state = _load_checkpoint(checkpoint, config, data)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            loss_fn.load_state_dict(state["loss"])
            generator.set_state(state["rng"]["generator"])
            torch.set_rng_state(state["rng"]["torch"])
            history = [EpochMetrics(**m) for m in state["history"]]
            if len(history) != state["epoch"]:
                raise ValueError(
                    f"checkpoint {checkpoint}: holds {len(history)} epochs of metrics for "
                    f"epoch {state['epoch']}; delete it to start this run over"
                )
            if on_resume is not None:
                on_resume(list(history))
        else:
            checkpoint.unlink(missing_ok=True)  # a stale one from an earlier run
    for epoch in range(len(history) + 1, config.epochs + 1):
        timer.reset()
        start, total_loss, batches = (
            time.perf_counter(),
            0.0,
            _batches(len(images), config.batch_size, generator),
        )
        bar = tqdm(
            batches,
            desc=f"{config.method} epoch {epoch}/{config.epochs}",
            disable=not config.progress,
            leave=False,
        )
        for idx in bar:
            batch, target = images[idx], paths[idx]
            if config.augment:
                which = torch.randint(0, 4, (len(idx),), generator=generator)
                batch, target = corner_symmetry(batch, which), sym_paths[which, idx]
            batch = batch.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(batch), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_fn.after_backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        scheduler.step()
        train_time = time.perf_counter() - start
        train_solver, train_noise, train_instances = (
            timer.total("solver"),
            timer.total("noise"),
            timer.instances,
        )
        timer.reset()
        start = time.perf_counter()
        z = _predict(model, test_images, config.method, timer, config.eval_batch_size)
        optimal, exact = evaluate_paths(
            z, test_paths.numpy(), test_costs.numpy(), check_valid=config.method == "baseline"
        )
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=total_loss / len(images),
            test_cost_optimal=float(optimal.mean()),
            test_exact=float(exact.mean()),
            time_network=train_time - train_solver - train_noise,
            time_solver=train_solver,
            time_noise=train_noise,
            time_eval=time.perf_counter() - start,
            solver_instances_train=train_instances,
            solver_instances_eval=timer.instances,
        )
        if not math.isfinite(metrics.train_loss):
            raise FloatingPointError(f"epoch {epoch}: the training loss is not finite")
        history.append(metrics)
        if checkpoint is not None:
            _save_checkpoint(
                checkpoint,
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": _run_key(config),
                    "data": data,
                    "epoch": epoch,
                    "history": [dataclasses.asdict(m) for m in history],
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "loss": loss_fn.state_dict(),
                    "rng": {"generator": generator.get_state(), "torch": torch.get_rng_state()},
                },
            )
        if on_epoch is not None:
            on_epoch(metrics)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
        _temporary(checkpoint).unlink(missing_ok=True)
    return history
