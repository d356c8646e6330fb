"""What every `imle_fn.nn` layer shares: hyper-parameters that anneal without recompiling, a
noise generator the layer owns (its state in the ``state_dict``), and the sample bookkeeping.

**Hyper-parameters** (`HyperParameter`): ``layer.lam = 0.5`` checks the value (a Python number,
a NumPy scalar or a 0-d tensor, as the functional estimators take it) and keeps it twice: as a
Python float, which the eager forward passes on (no tensor made per call), and in a 0-d float64
CPU tensor updated in place, which a `torch.compile`\\ d forward reads instead. A compiled graph
takes that tensor as an input, so annealing ``lam`` every step never recompiles. The tensor stays
on the CPU when the layer moves to a GPU (it is not a buffer), so reading it costs no device sync;
hyper-parameters are construction arguments and not part of the ``state_dict``.

**Noise**: a layer draws it from ``layer.generator`` (`torch.Generator`, see `NoisyLayer`) with
the library's samplers, in ``theta``'s dtype and on its device (a CPU generator draws on the CPU
and copies, exactly the samples of `imle_fn.sum_of_gamma` / `gumbel` / `gaussian` with that
generator). The draw runs eagerly: under `torch.compile` it is one graph break per call (pass
``noise=`` to the forward, drawn with `NoisyLayer.sample_noise` outside, for ``fullgraph=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, overload

import torch

from imle_fn.core.checks import as_number, check_choice, check_int, check_positive_values
from imle_fn.core.contract import SolverLike
from imle_fn.core.noise import gaussian, gumbel, sum_of_gamma

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


def _owned_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """The layer's generator: the given one, a CPU generator seeded with the given int, or (None)
    a CPU generator seeded from torch's default generator (so `torch.manual_seed` fixes it)."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    elif isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(
            "generator: expected a torch.Generator, an int seed or None, got"
            f" {type(generator).__name__}"
        )
    else:
        seed = check_int("generator", generator, minimum=0)
    return torch.Generator().manual_seed(seed)


def _solver_k(solver: SolverLike) -> float | None:
    """The ``k`` of a solver that has one integer ``k`` (`imle_fn.TopK` with an int), else None."""
    k = getattr(solver, "k", None)
    if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
        return float(k)
    return None


def _under_functorch(x: torch.Tensor) -> bool:
    """True for a tensor wrapped by a `torch.func` transform (vmap, grad)."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


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
            is then shaped like ``theta``, an estimate of the marginals ``E[z]``; each sample's
            cotangent is the incoming one divided by ``S``, as for a loss that averages over
            samples).
        generator: a `torch.Generator` (used as is, and shared with whoever else holds it; put
            it on the GPU to draw there), an int (a new CPU generator seeded with it) or None (a
            new CPU generator seeded from torch's default generator, so `torch.manual_seed`
            makes layers reproducible).

    Raises:
        TypeError: a ``generator`` of the wrong type.
        ValueError: an unknown ``noise_type`` or ``reduction``; Sum-of-Gamma without a ``k`` (and
            a solver without an integer ``k``); ``num_samples`` or ``num_terms`` below 1;
            ``reduction="mean"`` without ``num_samples``.
    """

    noise_types: tuple[NoiseType | None, ...] = ("sum_of_gamma", "gumbel", "gaussian", None)

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
        self.generator = _owned_generator(generator)

    # ---- noise ------------------------------------------------------------------------------

    def sample_noise(self, theta: torch.Tensor) -> torch.Tensor | None:
        """The noise this layer draws for scores shaped like ``theta``, from its generator.

        Call it outside a `torch.compile`\\ d or `torch.func` transformed function and pass the
        result as ``noise=`` to the forward (``fullgraph=True``, ensembles under ``vmap``).

        Args:
            theta: ``[*batch, *event]`` scores (only their shape, dtype and device are used).

        Returns:
            ``[S, *theta.shape]`` noise for ``num_samples=S``, ``theta.shape`` for None, in
            ``theta``'s dtype and on its device; None for ``noise_type=None``.

        Raises:
            RuntimeError: called inside ``torch.func.vmap`` without ``randomness="same"`` (the
                samplers draw one tensor from the generator: draw outside, or use "same").
        """
        return _draw(self, theta)

    def _noise_for(self, theta: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor | None:
        """The forward's noise: the caller's, none in eval mode, else a fresh draw."""
        if noise is not None:
            return noise
        if not self.training or self.noise_type is None:
            return None
        return _draw(self, theta)

    def _reduce(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``z: [*sample, *theta.shape]`` reduced as ``reduction`` says."""
        ns = z.ndim - theta.ndim
        if self.reduction == "mean" and ns > 0:
            return z.mean(dim=tuple(range(ns)))
        return z

    def manual_seed(self, seed: int) -> NoisyLayer:
        """Reseed the layer's generator (e.g. each copy of a `copy.deepcopy`\\ d ensemble)."""
        self.generator.manual_seed(check_int("seed", seed, minimum=0))
        return self

    # ---- state_dict: the generator's state ------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        """The generator's state (``torch.Generator.get_state``), saved in the ``state_dict``."""
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        """Restore the generator's state from a ``state_dict``.

        Raises:
            ValueError: ``state`` is not what `get_extra_state` saves.
        """
        if not isinstance(state, dict) or not isinstance(state.get("generator"), torch.Tensor):
            raise ValueError(
                f"{type(self).__name__}: the state_dict's extra state must be"
                " {'generator': <a generator state tensor>}"
            )
        self.generator.set_state(state["generator"].to("cpu"))

    def _noise_repr(self) -> str:
        text = f"noise_type={self.noise_type!r}"
        if self.noise_type == "sum_of_gamma":
            text += f", k={self.k}, num_terms={self.num_terms}"
        return text + f", num_samples={self.num_samples}, reduction={self.reduction!r}"


@torch.compiler.disable
def _draw(layer: NoisyLayer, theta: torch.Tensor) -> torch.Tensor | None:
    """Draw ``layer``'s noise for ``theta`` eagerly (a graph break under `torch.compile`: the
    samplers take a generator and run Numba, which dynamo cannot trace)."""
    if layer.noise_type is None:
        return None
    shape = tuple(theta.shape)
    if layer.num_samples is not None:
        shape = (layer.num_samples, *shape)
    options: dict[str, Any] = {
        "generator": layer.generator,
        "dtype": theta.dtype,
        "device": theta.device,
    }
    try:
        if layer.noise_type == "sum_of_gamma":
            assert layer.k is not None  # set with the law (see __init__)
            return sum_of_gamma(shape, k=layer.k, num_terms=layer.num_terms, **options)
        if layer.noise_type == "gumbel":
            return gumbel(shape, **options)
        return gaussian(shape, **options)
    except RuntimeError as err:
        if _under_functorch(theta) and math.prod(shape) > 0:
            first = str(err).split(". ")[0]
            raise RuntimeError(
                f"{type(layer).__name__}: drawing its noise inside torch.func.vmap needs"
                " randomness='same' (one draw shared by every slice; the samplers draw one tensor"
                " from the layer's generator, so randomness='different' is not supported), or"
                " draw per-slice noise outside with layer.sample_noise and pass it as noise="
                f" ({first})"
            ) from err
        raise
