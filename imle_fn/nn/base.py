"""What every `imle_fn.nn` layer shares: hyper-parameters that anneal without recompiling, a
noise generator the layer owns (its state in the ``state_dict``), and the sample bookkeeping.

**Hyper-parameters** (`HyperParameter`): ``layer.lam = 0.5`` checks the value (a Python number,
a NumPy scalar or a 0-d tensor, as the functional estimators take it) and keeps it twice: as a
Python float, which the eager forward passes on (no tensor made per call), and in a 0-d float64
CPU tensor updated in place, which a `torch.compile`\\ d forward reads instead. A compiled graph
takes that tensor as an input, so annealing ``lam`` every step never recompiles. The tensor stays
on the CPU when the layer moves to a GPU (it is not a buffer), so reading it costs no device sync;
hyper-parameters are construction arguments and not part of the ``state_dict``.

**Noise**: a layer keeps the state of its random generator in the buffer ``rng_state`` (the
``torch.Generator.get_state()`` bytes: a CPU ``uint8`` tensor, in the ``state_dict``, left on
the CPU when the layer moves). Each draw restores a generator from it, draws with the library's
samplers (exactly the samples of `imle_fn.sum_of_gamma` / `gumbel` / `gaussian` with that
generator, in ``theta``'s dtype and on its device) and writes the advanced state back. Eagerly
that is a plain call; inside `torch.compile` and `torch.func` transforms it is the custom op
``imle_fn::layer_noise``, which mutates ``rng_state``: the draw compiles into the graph
(``fullgraph=True`` works, with the eager numbers), and under ``vmap`` over stacked buffers
(ensembles) each slice draws from its own state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import torch

from imle_fn.core.checks import (
    as_number,
    check_choice,
    check_int,
    check_positive_values,
)
from imle_fn.core.contract import SolverLike
from imle_fn.core.noise import gaussian, gumbel, sum_of_gamma
from imle_fn.core.solving import is_plain

__all__ = ["HyperParameter", "NoiseType", "NoisyLayer", "Reduction"]

NoiseType = Literal["sum_of_gamma", "gumbel", "gaussian"]
"""The noise law a layer draws: Sum-of-Gamma (needs ``k``), standard Gumbel or standard normal."""

Reduction = Literal["none", "mean"]
"""What a layer does with its sample dim: ``"none"`` keeps it, ``"mean"`` averages over it."""


class HyperParameter:
    """A layer's float hyper-parameter: a data descriptor checked on assignment.

    Reading ``layer.lam`` gives a Python float; assigning checks the value with ``check`` (a
    `imle_fn.core.checks` function, e.g. ``check_positive``) and updates both the float and the
    layer's 0-d float64 CPU tensor ``_hyper_<name>`` in place (see the module docstring).
    """

    def __init__(self, check: Callable[[str, object], float]) -> None:
        self.check = check
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> HyperParameter: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> float: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> float | HyperParameter:
        if obj is None:
            return self
        value: float = obj.__dict__[f"_float_{self.name}"]
        return value

    def __set__(self, obj: torch.nn.Module, value: float | torch.Tensor) -> None:
        number = self.check(self.name, value)
        obj.__dict__[f"_float_{self.name}"] = number
        tensor = obj.__dict__.get(f"_hyper_{self.name}")
        if tensor is None:
            # A plain attribute, not a buffer: .to(device) leaves it on the CPU.
            obj.__dict__[f"_hyper_{self.name}"] = torch.tensor(number, dtype=torch.float64)
        else:
            with torch.no_grad():
                tensor.fill_(number)


def hyper(layer: torch.nn.Module, name: str) -> float:
    """The value of ``layer``'s hyper-parameter ``name`` to pass to a functional estimator: the
    float eagerly, the layer's 0-d CPU tensor inside `torch.compile` (graph data, so a new value
    does not recompile; the estimators accept both)."""
    if torch.compiler.is_compiling():
        value: float = getattr(layer, f"_hyper_{name}")
        return value
    number: float = getattr(layer, f"_float_{name}")
    return number


def _generator_state(generator: torch.Generator | int | None) -> tuple[torch.Tensor, str]:
    """``(state, device)`` of the generator a layer starts from: the given generator's (copied:
    the layer does not advance it), a CPU generator seeded with the given int, or (None) a CPU
    generator seeded from torch's default generator (so `torch.manual_seed` fixes it)."""
    if isinstance(generator, torch.Generator):
        return generator.get_state().clone(), str(generator.device)
    if generator is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    elif isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(
            "generator: expected a torch.Generator, an int seed or None, got"
            f" {type(generator).__name__}"
        )
    else:
        seed = check_int("generator", generator, minimum=0)
    return torch.Generator().manual_seed(seed).get_state(), "cpu"


def _solver_k(solver: SolverLike) -> float | None:
    """The ``k`` of a solver that has one integer ``k`` (`imle_fn.TopK` with an int), else None."""
    k = getattr(solver, "k", None)
    if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
        return float(k)
    return None


class NoisyLayer(torch.nn.Module):
    """Base of the layers that perturb their scores: the noise law, the generator, the samples.

    Args:
        noise_type: the law of the noise the layer draws: ``"sum_of_gamma"`` (needs ``k``),
            ``"gumbel"``, ``"gaussian"``, or None (no noise: the MAP state of ``theta``).
        k: Sum-of-Gamma's ``k``, the number of ones in a MAP state (a k-subset's ``k``, about a
            path's length); defaults to the solver's integer ``k`` (`imle_fn.TopK`).
        num_terms: Sum-of-Gamma's number of Gamma terms.
        num_samples: None: one sample, output shaped like ``theta``; an int ``S``: ``S``
            samples, output ``[S, *theta.shape]`` (or their mean, see ``reduction``).
        reduction: ``"none"`` keeps the sample dim, ``"mean"`` averages the samples (the output
            is then shaped like ``theta``, an estimate of the marginals ``E[z]``; each sample
            receives the incoming cotangent unscaled, and the estimator averages the per-sample
            gradients, so the gradient estimates that of ``E[z]`` whatever ``S``).
        generator: where the layer's random stream starts: a `torch.Generator` (its state is
            copied into ``rng_state``; the layer draws on its device, so a CUDA generator draws
            on the GPU; the generator itself is not advanced), an int (a CPU generator seeded
            with it) or None (a CPU generator seeded from torch's default generator, so
            `torch.manual_seed` makes layers reproducible).

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: an unknown ``noise_type`` or ``reduction``; Sum-of-Gamma without a ``k`` (and
            a solver without an integer ``k``); ``num_samples`` or ``num_terms`` below 1;
            ``reduction="mean"`` without ``num_samples``.
    """

    noise_types: tuple[NoiseType | None, ...] = ("sum_of_gamma", "gumbel", "gaussian", None)
    rng_state: torch.Tensor

    def __init__(
        self,
        solver: SolverLike,
        *,
        noise_type: NoiseType | None,
        k: float | None,
        num_terms: int,
        num_samples: int | None,
        reduction: Reduction,
        generator: torch.Generator | int | None,
        event_ndim: int | None,
    ) -> None:
        super().__init__()
        self.solver = solver
        self.event_ndim = event_ndim
        self.noise_type = check_choice("noise_type", noise_type, self.noise_types)
        self.reduction = check_choice("reduction", reduction, ("none", "mean"))
        self.num_samples = (
            None if num_samples is None else check_int("num_samples", num_samples, minimum=1)
        )
        if self.reduction == "mean" and self.num_samples is None:
            raise ValueError(
                "reduction: 'mean' averages over the sample dim, which num_samples=None does not"
                " make; pass num_samples=S"
            )
        self.num_terms = check_int("num_terms", num_terms, minimum=1)
        self.k: float | None = None
        if noise_type == "sum_of_gamma":
            if k is None:
                k = _solver_k(solver)
            if k is None:
                raise ValueError(
                    "k: Sum-of-Gamma noise needs k, the number of ones in a MAP state (a"
                    " k-subset's k, about a path's length), and the solver has no integer k;"
                    " pass k=..., or noise_type='gumbel'"
                )
            self.k = float(check_positive_values("k", as_number("k", k), torch.Size())[0])
        state, self.generator_device = _generator_state(generator)
        self.register_buffer("rng_state", state)

    # ---- noise ------------------------------------------------------------------------------

    def sample_noise(self, theta: torch.Tensor) -> torch.Tensor | None:
        """The noise this layer draws for scores shaped like ``theta``, from its ``rng_state``
        (which it advances): what the forward draws when it is given no ``noise``.

        Args:
            theta: ``[*batch, *event]`` scores (only their shape, dtype and device are used).

        Returns:
            ``[S, *theta.shape]`` noise for ``num_samples=S``, ``theta.shape`` for None, in
            ``theta``'s dtype and on its device; None for ``noise_type=None``.
        """
        if self.noise_type is None:
            return None
        num_samples = -1 if self.num_samples is None else self.num_samples
        k = 0.0 if self.k is None else self.k
        args = (self.noise_type, num_samples, k, self.num_terms, self.generator_device)
        if is_plain(theta) and is_plain(self.rng_state):
            return _draw(theta.shape, theta.dtype, theta.device, self.rng_state, *args)
        return torch.ops.imle_fn.layer_noise(theta.detach(), self.rng_state, *args)

    def _noise_for(self, theta: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor | None:
        """The forward's noise: the caller's, none in eval mode, else a fresh draw."""
        if noise is not None or not self.training:
            return noise
        return self.sample_noise(theta)

    def _reduce(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``z: [*sample, *theta.shape]`` reduced as ``reduction`` says."""
        ns = z.ndim - theta.ndim
        if self.reduction == "mean" and ns > 0:
            # The value is the mean over samples; its cotangent reaches every sample UNSCALED, so
            # that the estimator's average of the per-sample gradients estimates the gradient of
            # the expected output (independent of S), as the chain rule through E[z] would have it.
            total = z.sum(dim=tuple(range(ns)))
            mean = total / math.prod(z.shape[:ns])
            return mean.detach() + (total - total.detach())
        return z

    def manual_seed(self, seed: int) -> NoisyLayer:
        """Restart the layer's random stream from ``seed`` (on its generator's device), e.g. for
        each copy of a `copy.deepcopy`\\ d ensemble, whose copies otherwise draw alike.

        Raises:
            ValueError: a negative ``seed``.
        """
        seed = check_int("seed", seed, minimum=0)
        state = torch.Generator(self.generator_device).manual_seed(seed).get_state()
        with torch.no_grad():
            self.rng_state.copy_(state)
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> NoisyLayer:
        # .to(device) / .cuda() / .to_empty(...) move buffers; the generator state stays on the
        # host, where torch.Generator.set_state reads it (no device sync per draw).
        state = self._buffers["rng_state"]
        super()._apply(fn, recurse)
        self._buffers["rng_state"] = state
        return self

    def _noise_repr(self) -> str:
        text = f"noise_type={self.noise_type!r}"
        if self.noise_type == "sum_of_gamma":
            text += f", k={self.k}, num_terms={self.num_terms}"
        return text + f", num_samples={self.num_samples}, reduction={self.reduction!r}"


def solver_repr(solver: object) -> str:
    """The solver in a layer's ``extra_repr``: its repr, or its type's name while compiling
    (``torch.func.vmap(layer)`` formats the layer, and dynamo cannot trace a dataclass repr's
    recursion guard)."""
    if torch.compiler.is_compiling():
        return f"{type(solver).__name__}(...)"
    return repr(solver)


def _draw(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    state: torch.Tensor,
    noise_type: str,
    num_samples: int,
    k: float,
    num_terms: int,
    generator_device: str,
) -> torch.Tensor:
    """Noise ``[num_samples, *shape]`` (``shape`` for ``num_samples < 0``) of ``noise_type`` from
    a generator restored from ``state``; ``state`` is advanced in place."""
    generator = torch.Generator(generator_device)
    generator.set_state(state.clone())  # set_state reads from offset 0: never pass it a view
    size = tuple(shape) if num_samples < 0 else (num_samples, *shape)
    options: dict[str, Any] = {"generator": generator, "dtype": dtype, "device": device}
    if noise_type == "sum_of_gamma":
        noise = sum_of_gamma(size, k=k, num_terms=num_terms, **options)
    elif noise_type == "gumbel":
        noise = gumbel(size, **options)
    else:
        noise = gaussian(size, **options)
    state.copy_(generator.get_state())
    return noise


@torch.library.custom_op("imle_fn::layer_noise", mutates_args=("state",))
def _layer_noise(
    like: torch.Tensor,
    state: torch.Tensor,
    noise_type: str,
    num_samples: int,
    k: float,
    num_terms: int,
    generator_device: str,
) -> torch.Tensor:
    return _draw(
        like.shape, like.dtype, like.device, state, noise_type, num_samples, k, num_terms,
        generator_device,
    )  # fmt: skip


@_layer_noise.register_fake
def _layer_noise_fake(
    like: torch.Tensor,
    state: torch.Tensor,
    noise_type: str,
    num_samples: int,
    k: float,
    num_terms: int,
    generator_device: str,
) -> torch.Tensor:
    shape = tuple(like.shape) if num_samples < 0 else (num_samples, *like.shape)
    return like.new_empty(shape)


@_layer_noise.register_vmap
def _layer_noise_vmap(
    info: Any,
    in_dims: tuple[Any, ...],
    like: torch.Tensor,
    state: torch.Tensor,
    noise_type: str,
    num_samples: int,
    k: float,
    num_terms: int,
    generator_device: str,
) -> tuple[torch.Tensor, int | None]:
    """Under ``vmap``: with the states stacked (``functional_call`` over
    `torch.func.stack_module_state`'s buffers) each slice draws from its own state, whatever
    vmap's ``randomness``; with one state shared by every slice (a layer called inside the
    vmapped function) vmap's ``randomness`` decides, as for torch's own random ops:
    ``"different"`` draws for each slice in turn from the one stream, ``"same"`` draws once for
    all, and ``"error"`` (vmap's default) raises."""
    like_dim, state_dim = in_dims[0], in_dims[1]
    if like_dim is not None:
        like = like.select(like_dim, 0)  # only the per-slice shape, dtype and device matter
    args = (noise_type, num_samples, k, num_terms, generator_device)
    if state_dim is None:
        if info.randomness == "error":
            raise RuntimeError(
                "imle_fn.nn: a layer drew noise under torch.func.vmap(randomness='error', vmap's"
                " default) from its one rng_state, shared by every slice; pass"
                " randomness='different' (a draw per slice) or 'same' (one draw for all), give"
                " the forward its noise, or stack the layers' states"
                " (torch.func.stack_module_state + functional_call) for a stream per slice"
            )
        if info.randomness == "same":
            return torch.ops.imle_fn.layer_noise(like, state, *args), None
        draws = [torch.ops.imle_fn.layer_noise(like, state, *args) for _ in range(info.batch_size)]
        return torch.stack(draws), 0
    draws = [
        torch.ops.imle_fn.layer_noise(like, state.select(state_dim, v), *args)
        for v in range(info.batch_size)
    ]
    return torch.stack(draws), 0
