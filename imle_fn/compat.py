"""A drop-in for uclnlp/torch-imle, built on the functional core.

Port by changing the import::

    from imle_fn.compat import imle, TargetDistribution, SumOfGammaNoiseDistribution

Semantics are the reference's: the wrapped solver receives ``[B * S, ...]`` perturbed scores (sample
index fastest) and the result is ``[B * S, ...]``; the gradient is the mean over samples of
``z - z'`` with ``theta' = alpha * theta - beta * dy``, with no ``1 / beta`` factor; no noise when
``noise_distribution`` is None; noise is drawn with ``noise_distribution.sample([B, S, ...])``.

Unlike the reference, results and noise stay on the input's device, non-contiguous input works,
``torch.func.grad``/``vjp``/``jacrev``/``vmap`` and ``torch.compile`` work, with and without a noise
distribution (vmap over an extra leading dim too, even when the solver is NumPy code inside a torch
function; with a noise distribution use ``vmap(..., randomness="same")``, since drawing noise is a
random op; under ``torch.compile`` the Sum-of-Gamma draw is a graph break, so ``fullgraph=True``
needs the noise drawn outside and `imle_fn.imle`), the global RNG is only used when no generator is
given, and arguments are checked when the layer is built, under the reference's names. Only
`TargetDistribution` (alpha, beta) targets are supported; a custom `BaseTargetDistribution`
subclass raises TypeError.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from imle_fn.core.checks import (
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_positive_values,
)
from imle_fn.core.contract import assume_constant_result
from imle_fn.core.noise import sum_of_gamma
from imle_fn.core.wiring import estimate
from imle_fn.estimators.implicit_mle import IMLE

__all__ = [
    "BaseNoiseDistribution",
    "BaseTargetDistribution",
    "SumOfGammaNoiseDistribution",
    "TargetDistribution",
    "imle",
]


class BaseTargetDistribution(ABC):
    """Base class of target distributions (reference API)."""

    @abstractmethod
    def params(self, theta: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """Target parameters from the scores ``theta`` and the cotangent ``dy``."""


class TargetDistribution(BaseTargetDistribution):
    """``theta' = alpha * theta - beta * dy`` (reference API).

    Raises:
        ValueError: a non-finite ``alpha``, or ``beta <= 0`` (the gradient ``z - z'`` is zero for
            ``beta = 0``).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0) -> None:
        self.alpha = check_finite("alpha", alpha)
        self.beta = check_positive("beta", beta)

    def params(self, theta: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        return self.alpha * theta - self.beta * dy


class BaseNoiseDistribution(ABC):
    """Base class of noise distributions (reference API): ``sample(shape) -> Tensor``."""

    @abstractmethod
    def sample(self, shape: torch.Size) -> torch.Tensor:
        """Draw noise of the given shape."""


class SumOfGammaNoiseDistribution(BaseNoiseDistribution):
    """Sum-of-Gamma noise (reference API), drawn by `imle_fn.sum_of_gamma`.

    Args:
        k: the Sum-of-Gamma ``k`` (about the number of ones in a MAP state).
        nb_iterations: number of Gamma terms.
        device: device of the samples (the input's device is used by `imle` regardless).
        generator: optional `torch.Generator` for reproducible noise (new; the reference had none).

    Raises:
        TypeError: ``nb_iterations`` is not an int, ``k`` not a number or tensor.
        ValueError: ``nb_iterations < 1``; a ``k`` that is not positive and finite.
    """

    def __init__(
        self,
        k: float,
        nb_iterations: int = 10,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        check_positive_values("k", k, torch.Size(getattr(k, "shape", ())))  # now, not at a draw
        self.k = k
        self.nb_iterations = check_int("nb_iterations", nb_iterations, minimum=1)
        self.device = device
        self.generator = generator

    def sample(self, shape: Sequence[int]) -> torch.Tensor:
        """Draw ``[*shape]`` noise; inside `torch.func` transforms and `torch.compile` as data.

        The sampler runs on the host (Numba), outside every transform: under ``torch.func.grad``,
        ``vjp`` and ``jacrev`` the noise is a constant; under ``vmap(randomness="same")`` one draw
        is shared by all slices; under `torch.compile` the draw is a graph break (so
        ``fullgraph=True`` refuses it: draw the noise outside and call `imle_fn.imle`).

        Raises:
            NotImplementedError: under ``vmap`` with ``randomness`` other than ``"same"``.
        """
        if torch.compiler.is_compiling() and _install_eager_draw():
            return _eager_draw(self, tuple(shape))
        return _outside_transforms(lambda: self._draw(tuple(shape)))

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return sum_of_gamma(
            shape,
            k=self.k,
            num_terms=self.nb_iterations,
            generator=self.generator,
            device=self.device,
        )


_eager_draw: Any = None  # SumOfGammaNoiseDistribution._draw behind torch.compiler.disable


@assume_constant_result
def _install_eager_draw() -> bool:
    """Set `_eager_draw`: run for real (not traced) when dynamo first meets it, so that importing
    imle_fn.compat never imports dynamo (seconds) and the wrapper is a plain module global."""
    global _eager_draw
    if _eager_draw is None:
        _eager_draw = torch.compiler.disable(
            SumOfGammaNoiseDistribution._draw,
            reason="imle_fn.compat draws Sum-of-Gamma noise on the host (Numba), outside the"
            " graph; with fullgraph=True draw the noise outside the compiled function and pass"
            " it to imle_fn.imle",
        )
    return True


def _outside_transforms(draw: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run ``draw`` with no `torch.func` transform active: its result is plain data."""
    from torch._functorch import pyfunctorch

    for interpreter in pyfunctorch.retrieve_all_functorch_interpreters():
        if interpreter.key() == pyfunctorch.TransformType.Vmap:
            randomness = str(interpreter.randomness())  # type: ignore[attr-defined]
            if not randomness.endswith("same"):
                raise NotImplementedError(
                    "noise_distribution: SumOfGammaNoiseDistribution under vmap needs"
                    f' randomness="same" (one draw shared by every slice), got {randomness!r};'
                    " for independent noise per slice draw it outside vmap (imle_fn.sum_of_gamma)"
                    " and pass it to imle_fn.imle"
                )
    with pyfunctorch.temporarily_clear_interpreter_stack():
        return draw()


def _apply(
    function: Callable[[torch.Tensor], torch.Tensor],
    theta: torch.Tensor,
    target: BaseTargetDistribution,
    noise_distribution: BaseNoiseDistribution | None,
    nb_samples: int,
    input_noise_temperature: float,
    target_noise_temperature: float,
) -> torch.Tensor:
    if not isinstance(target, TargetDistribution):
        raise TypeError(
            "target_distribution: imle_fn.compat supports TargetDistribution(alpha, beta); got "
            f"{type(target).__name__}"
        )
    if not isinstance(theta, torch.Tensor) or theta.ndim < 1:
        raise ValueError(f"input: expected a tensor of shape [B, ...], got {theta!r:.80}")
    batch, instance = theta.shape[0], theta.shape[1:]
    noise = None
    if noise_distribution is not None:
        drawn = noise_distribution.sample(torch.Size([batch, nb_samples, *instance]))
        drawn = drawn.to(device=theta.device, dtype=theta.dtype)  # [B, S, ...]
        noise = drawn.transpose(0, 1)  # [S, B, ...]: the core's sample-first layout
    elif nb_samples > 1:
        noise = theta.new_zeros(nb_samples, *theta.shape)  # [S, B, ...]: S identical MAP samples
    estimator = IMLE(
        lam=target.beta,
        alpha=target.alpha,
        temperature=input_noise_temperature,
        target_temperature=target_noise_temperature,
        divide_by_lam=False,
    )  # every value checked when the layer and its target distribution were built
    # The plain function goes in as it is (a constant under torch.compile, no wrapper to cache).
    z = estimate(estimator, theta, noise, function, len(instance), backend="torch")  # [S, B, ...]
    if noise is None:
        return z
    return z.transpose(0, 1).reshape(batch * nb_samples, *instance)  # [B * S, ...]


def imle(
    function: Callable[[torch.Tensor], torch.Tensor] | None = None,
    target_distribution: BaseTargetDistribution | None = None,
    noise_distribution: BaseNoiseDistribution | None = None,
    nb_samples: int = 1,
    input_noise_temperature: float = 1.0,
    target_noise_temperature: float = 1.0,
) -> Any:
    """Turn a batched solver ``[B, ...] -> [B, ...]`` into an I-MLE layer (reference API).

    Usable as ``imle(solver, ...)`` or as a decorator ``@imle(...)``. See the module docstring for
    the exact semantics.

    Args:
        function: the batched MAP solver, a torch function ``[B, ...] -> [B, ...]``.
        target_distribution: `TargetDistribution`; default ``TargetDistribution(1.0, 1.0)``.
        noise_distribution: anything with ``sample(shape)``; None means no noise.
        nb_samples: samples per instance S.
        input_noise_temperature: temperature of the forward's noise.
        target_noise_temperature: temperature of the target's noise.

    Returns:
        The wrapped function ``theta: [B, ...] -> z: [B * S, ...]`` (or a decorator).

    Raises:
        TypeError: ``nb_samples`` is not an int; when called, a custom target distribution, or
            extra positional arguments.
        ValueError: ``nb_samples < 1`` or a negative temperature (at construction); when called,
            the errors of `imle_fn.imle`.
    """
    if target_distribution is None:
        target_distribution = TargetDistribution(alpha=1.0, beta=1.0)
    check_int("nb_samples", nb_samples, minimum=1)
    input_noise_temperature = check_nonnegative("input_noise_temperature", input_noise_temperature)
    target_noise_temperature = check_nonnegative(
        "target_noise_temperature", target_noise_temperature
    )
    if function is None:
        return functools.partial(
            imle,
            target_distribution=target_distribution,
            noise_distribution=noise_distribution,
            nb_samples=nb_samples,
            input_noise_temperature=input_noise_temperature,
            target_noise_temperature=target_noise_temperature,
        )
    solver_fn = function

    @functools.wraps(solver_fn)
    def wrapper(input: torch.Tensor, *args: Any) -> torch.Tensor:
        if args:
            raise TypeError(
                "imle_fn.compat: extra positional arguments are not passed to the solver (the"
                " reference ignored them too); bind them with functools.partial instead"
            )
        return _apply(
            solver_fn,
            input,
            target_distribution,
            noise_distribution,
            nb_samples,
            input_noise_temperature,
            target_noise_temperature,
        )

    return wrapper
