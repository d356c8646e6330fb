"""Training and evaluation of one (method, seed) run of the discrete VAE.

Training step on a batch ``x [B, D]``: ``theta = encode(x)`` (``[B, m, n]``); ``S`` codes
``z = method.sample(theta)``; loss = mean over the batch of ``mean_S bernoulli_nll(decode(z), x) +
sum_blocks KL(p(.; theta / tau) || uniform)`` (the exact KL, `imle_fn.apps.dvae.elbo`), Adam.

Evaluation after every epoch, the same for every method: the test negative ELBO in nats per image,
``mean_x [ mean_S' bernoulli_nll(decode(z), x) + KL ]``, twice, with ``S'`` codes from two samplers
and the same exact KL of ``q = p(.; theta / tau)``:

* ``test_nelbo`` (the papers' protocol): ``z = TopK(theta + tau * eps)`` (`perturb_and_map`), the
  Sum-of-Gamma perturb-and-MAP codes the I-MLE family trains with. Their law is NOT ``q``: at the
  scores this model learns it is far less random (``tests/apps/test_dvae.py`` measures the gap), so
  the KL charged is not that of the codes decoded and this number is not a bound on ``-log p(x)``.
* ``test_nelbo_exact``: ``z`` exact samples of ``q`` (`imle_fn.topk_sample`), the law whose KL is
  charged: a true negative ELBO of the model (encoder ``q``, decoder, uniform prior).

Both samplers draw from generators re-seeded identically at every epoch (common random numbers
across epochs and methods of a seed).

Seeds: from the run's seed, `numpy.random.SeedSequence` spawns four streams: the initial weights
(the same for every method of a seed), the training stream (batch order and training noise), the
evaluation noise and the exact evaluation's uniforms. The same seed gives bit-identical numbers on
the same machine and thread count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from imle_fn.apps.dvae.data import BinaryImages
from imle_fn.apps.dvae.elbo import bernoulli_nll, kl_to_uniform
from imle_fn.apps.dvae.methods import LatentMethod, MethodSettings, make_method, perturb_and_map
from imle_fn.apps.dvae.model import DiscreteVAE
from imle_fn.apps.timing import Timer
from imle_fn.estimators.k_subset_sampling import topk_sample

__all__ = ["EpochRecord", "RunConfig", "evaluate", "seed_streams", "train_run"]


@dataclass(frozen=True)
class RunConfig:
    """One run's settings (see ``imle-fn bench dvae --help`` for their meaning and defaults)."""

    method: str
    seed: int
    settings: MethodSettings
    blocks: int = 20
    items: int = 20
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    eval_samples: int = 1
    eval_batch_size: int = 1000
    show: int = 10
    progress: bool = True


@dataclass
class EpochRecord:
    """One epoch's numbers: losses in nats per image, times in seconds."""

    epoch: int
    train_loss: float
    test_nelbo: float
    test_recon: float
    test_kl: float
    test_nelbo_exact: float
    test_recon_exact: float
    time_train: float
    time_eval: float
    time_kl: float
    time_solver: float
    time_noise: float
    extra: dict[str, float] = field(default_factory=dict)


def seed_streams(seed: int) -> tuple[int, int, int, int]:
    """Four independent 63-bit seeds (weights, training, evaluation, exact evaluation) derived
    from ``seed`` (the first three as in earlier versions, which spawned three)."""
    children = np.random.SeedSequence(seed).spawn(4)
    a, b, c, d = (int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for s in children)
    return a, b, c, d


def evaluate(
    model: DiscreteVAE,
    method: LatentMethod,
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    samples: int,
    batch_size: int,
    timer: Timer,
    exact_generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image reconstruction NLL of perturb-and-MAP codes (drawn with ``generator``) and KL,
    the first code's pixel probabilities, and the reconstruction NLL of exact samples of ``q``
    (uniforms from ``exact_generator``).

    Returns:
        ``(recon [N], kl [N], probs [N, D], recon_exact [N])`` in nats; ``probs`` =
        ``sigmoid(decode(z))`` of the first perturb-and-MAP code.
    """
    k = method.settings.k
    recon, kl, probs, recon_exact = [], [], [], []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            theta = model.encode(chunk)  # [B, m, n]
            noise = method.noise(theta.shape, samples, generator)  # [S, B, m, n]
            z = perturb_and_map(theta, noise, method.temperature, method.solver)
            logits = model.decode(z)  # [S, B, D]
            recon.append(bernoulli_nll(logits, chunk).mean(0))
            with timer("kl"):
                kl.append(kl_to_uniform(theta / method.temperature, k).sum(-1))
            probs.append(torch.sigmoid(logits[0]))
            uniforms = torch.rand(
                (samples, *theta.shape), generator=exact_generator, dtype=theta.dtype
            )
            exact = topk_sample(theta / method.temperature, uniforms, k)  # codes ~ q
            recon_exact.append(bernoulli_nll(model.decode(exact), chunk).mean(0))
    return torch.cat(recon), torch.cat(kl), torch.cat(probs), torch.cat(recon_exact)


def train_run(
    config: RunConfig,
    data: BinaryImages,
    *,
    on_epoch: Callable[[EpochRecord], Any] | None = None,
) -> dict[str, Any]:
    """Train ``config.method`` on ``data.train``; evaluate on ``data.test`` after every epoch.

    Args:
        config: the run's settings.
        data: the binarised images.
        on_epoch: called with each epoch's record as soon as it is known.

    Returns:
        The run's record: config, per-epoch numbers (`EpochRecord` as dicts) and the last epoch's
        pixel probabilities of the first ``config.show`` test images (``"reconstructions"``).

    Raises:
        FloatingPointError: a non-finite training loss.
    """
    from tqdm.auto import tqdm

    weights_seed, train_seed, eval_seed, exact_seed = seed_streams(config.seed)
    model = DiscreteVAE(
        data.num_pixels, config.blocks, config.items, torch.Generator().manual_seed(weights_seed)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    timer = Timer()
    method = make_method(config.method, config.settings, timer)
    generator = torch.Generator().manual_seed(train_seed)
    x_train, x_test = data.train, data.test
    k, tau = config.settings.k, method.temperature
    epochs: list[EpochRecord] = []
    probs = torch.empty(0)
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"{config.method} seed {config.seed}",
        disable=not config.progress,
        leave=False,
    )
    for epoch in bar:
        timer.reset()
        start = time.perf_counter()
        total = 0.0
        order = torch.randperm(len(x_train), generator=generator)
        for idx in order.split(config.batch_size):
            x = x_train[idx]  # [B, D]
            theta = model.encode(x)  # [B, m, n]
            z = method.sample(theta, generator)  # [S, B, m, n]
            recon = bernoulli_nll(model.decode(z), x).mean(0)  # [B]
            with timer("kl"):
                kl = kl_to_uniform(theta / tau, k).sum(-1)  # [B]
            loss = (recon + kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            method.after_backward()
            optimizer.step()
            total += loss.item() * len(idx)
        train_loss = total / len(x_train)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"{config.method}, epoch {epoch}: the training loss is not finite"
            )
        time_train = time.perf_counter() - start
        start = time.perf_counter()
        recon_t, kl_t, probs, recon_x = evaluate(
            model, method, x_test, torch.Generator().manual_seed(eval_seed),
            samples=config.eval_samples, batch_size=config.eval_batch_size, timer=timer,
            exact_generator=torch.Generator().manual_seed(exact_seed),
        )  # fmt: skip
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            test_nelbo=float((recon_t + kl_t).mean()),
            test_recon=float(recon_t.mean()),
            test_kl=float(kl_t.mean()),
            test_nelbo_exact=float((recon_x + kl_t).mean()),
            test_recon_exact=float(recon_x.mean()),
            time_train=time_train,
            time_eval=time.perf_counter() - start,
            time_kl=timer.total("kl"),
            time_solver=timer.total("solver"),
            time_noise=timer.total("noise"),
            extra=method.diagnostics(),
        )
        epochs.append(record)
        bar.set_postfix(test_nelbo=f"{record.test_nelbo:.2f}")
        if on_epoch is not None:
            on_epoch(record)
    return {
        "method": config.method,
        "seed": config.seed,
        "config": asdict(config),
        "epochs": [asdict(e) for e in epochs],
        "reconstructions": probs[: config.show].tolist(),
    }
