"""Hyper-parameters as numbers, NumPy scalars and 0-d tensors; under ``torch.compile`` they are
data of the graph: an annealing schedule compiles a bounded number of graphs (pinned here), with
the eager gradients for every value, and bad values are still refused, when the compiled code runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

import imle_fn
from imle_fn.core import wiring
from tests.helpers import gen

F64 = torch.float64
TOP2 = imle_fn.TopK(2)
THETA = torch.randn(4, 6, generator=gen(1), dtype=F64)
NOISE = imle_fn.gumbel((3, 4, 6), generator=gen(2), dtype=F64)
W = torch.randn(3, 4, 6, generator=gen(3), dtype=F64)
Y = imle_fn.map_solve(-THETA, TOP2)  # target 2-subsets for the Fenchel-Young loss
SCHEDULE = [1.0, 2.0, 0.5, 3.0, 0.25, 1.5]  # six values of an annealed hyper-parameter

# name -> (the annealed hyper-parameter, loss(theta, value)); each ends in a scalar.
CASES: dict[str, tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]] = {
    "imle": ("lam", lambda t, v: (imle_fn.imle(t, NOISE, TOP2, lam=v) * W).sum()),
    "imle_alpha": ("alpha", lambda t, v: (imle_fn.imle(t, NOISE, TOP2, alpha=v) * W).sum()),
    "imle_temperature": (
        "temperature",
        lambda t, v: (imle_fn.imle(t, NOISE, TOP2, temperature=v, target_temperature=v) * W).sum(),
    ),
    "imle_central": ("lam", lambda t, v: (imle_fn.imle_central(t, NOISE, TOP2, lam=v) * W).sum()),
    "aimle": ("beta", lambda t, v: (imle_fn.aimle(t, NOISE, TOP2, beta=v) * W).sum()),
    "dbb": ("lam", lambda t, v: (imle_fn.dbb(t, TOP2, lam=v) * W[0]).sum()),
    "perturbed": (
        "sigma",
        lambda t, v: (imle_fn.perturbed(t, NOISE, TOP2, sigma=v, noise_type="gumbel") * W[0]).sum(),
    ),
    "ste": ("temperature", lambda t, v: (imle_fn.ste(t, NOISE, TOP2, temperature=v) * W).sum()),
    "fenchel_young_loss": (
        "sigma",
        lambda t, v: imle_fn.fenchel_young_loss(t, Y, NOISE, TOP2, sigma=v).sum(),
    ),
}


def _value_and_grad(fn: Callable[..., torch.Tensor], value: Any) -> tuple[torch.Tensor, ...]:
    t = THETA.clone().requires_grad_()
    out = fn(t, value)
    (grad,) = torch.autograd.grad(out, t)
    return out.detach(), grad


@pytest.mark.parametrize("name", list(CASES))
def test_numbers_numpy_scalars_and_tensors_give_the_same_result(name: str) -> None:
    _, fn = CASES[name]
    expected = _value_and_grad(fn, 0.5)
    kinds = [np.float32(0.5), np.float64(0.5), np.array(0.5), torch.tensor(0.5)]
    kinds += [torch.tensor(0.5, dtype=F64), torch.tensor(0.5, dtype=torch.float16)]
    for value in kinds:
        got = _value_and_grad(fn, value)
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b), (name, type(value))
    assert expected[1].abs().sum() > 0  # the gradient is not trivially zero


def compiled_graphs(counter: CompileCounterWithBackend) -> int:
    """The graphs handed to the backend that compute something. (Dynamo sometimes restarts its
    analysis of a frame once, e.g. for a float64 0-d tensor input, and hands the backend an empty
    graph first: not a recompile, and not a graph that runs.)"""
    return sum(any(n.op == "call_function" for n in g.graph.nodes) for g in counter.graphs)


def _anneal(name: str, wrap: Callable[[float], Any]) -> tuple[int, int]:
    """Run the schedule compiled (aot_eager: dynamo + AOTAutograd, the path of the custom ops),
    compare every value's loss and gradient with eager, return (graphs compiled, dynamo's count
    of unique graphs)."""
    _, fn = CASES[name]
    torch._dynamo.reset()
    counters.clear()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    for value in SCHEDULE:
        got, expected = _value_and_grad(compiled, wrap(value)), _value_and_grad(fn, value)
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b), (name, value)
    return compiled_graphs(counter), counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("name", list(CASES))
def test_an_annealed_float_compiles_two_graphs_not_one_per_value(name: str) -> None:
    """Six values: the first compiles with the float as a constant, the first change recompiles
    once with it symbolic (dynamo's automatic dynamic), every later value reuses that graph.
    Before the hyper-parameters became data of the op, the change raised with dynamic=None."""
    assert _anneal(name, float) == (2, 2)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_an_annealed_tensor_compiles_one_graph(name: str, dtype: torch.dtype) -> None:
    assert _anneal(name, lambda v: torch.tensor(v, dtype=dtype)) == (1, 1)


def test_an_annealed_float_with_dynamic_false_compiles_once_per_value() -> None:
    """``dynamic=False`` keeps floats constants: one graph per value, as documented."""
    _, fn = CASES["imle"]
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True, dynamic=False)
    for value in SCHEDULE[:3]:
        _value_and_grad(compiled, value)
    assert compiled_graphs(counter) == 3


def test_bad_values_are_refused_when_the_compiled_code_runs() -> None:
    """A tensor or symbolic float has no value while tracing: the op checks it when it runs."""
    _, fn = CASES["imle"]
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    _value_and_grad(compiled, torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"lam: expected > 0, got -1\.0"):
        _value_and_grad(compiled, torch.tensor(-1.0))
    for value in (1.0, 2.0):  # the second call makes lam symbolic
        _value_and_grad(compiled, value)
    with pytest.raises(ValueError, match=r"lam: expected > 0, got -3\.0"):
        _value_and_grad(compiled, -3.0)
    with pytest.raises(ValueError, match="lam: expected a finite number, got nan"):
        _value_and_grad(compiled, float("nan"))


def test_a_bad_sigma_of_the_fenchel_young_loss_is_refused_when_compiled() -> None:
    """The loss uses sigma in the graph itself: it goes through the imle_fn::check_hyper op."""
    _, fn = CASES["fenchel_young_loss"]
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    _value_and_grad(compiled, torch.tensor(1.0))
    with pytest.raises(ValueError, match="sigma: expected >= 0"):
        _value_and_grad(compiled, torch.tensor(-0.5))


def test_opcheck_check_hyper() -> None:
    value = torch.tensor(0.5, dtype=F64)
    torch.library.opcheck(torch.ops.imle_fn.check_hyper.default, (value, "sigma", "nonnegative"))
    with pytest.raises(ValueError, match="sigma: expected >= 0"):
        torch.ops.imle_fn.check_hyper(-value, "sigma", "nonnegative")


def test_what_tracing_can_check_is_checked_while_tracing() -> None:
    _, fn = CASES["imle"]
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    for value, match in [
        (torch.tensor(1.0, requires_grad=True), "lam: got a tensor that requires grad"),
        (torch.ones(2), "lam: expected a number or a 0-d tensor, got a tensor of shape"),
    ]:
        with pytest.raises(Exception, match=match):
            _value_and_grad(compiled, value)


def test_the_eager_path_makes_no_hyper_parameter_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python floats stay floats eagerly: the tensor packing is the compiled path's alone."""

    def refuse(*args: object) -> None:
        raise AssertionError("the eager path packed its hyper-parameters into a tensor")

    monkeypatch.setattr(wiring, "_pack", refuse)
    for name, (_, fn) in CASES.items():
        _value_and_grad(fn, 0.7)  # would raise through _pack
        assert name


def test_per_slice_hyper_parameters_under_vmap_inside_compile() -> None:
    """A vmapped 0-d lam inside a compiled function: one op call per slice (the vmap rule)."""
    lams = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    thetas = torch.randn(3, 4, 6, generator=gen(4), dtype=F64)

    def total(t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        per = torch.func.vmap(lambda x, v: (imle_fn.imle(x, NOISE, TOP2, lam=v) * W).sum())
        return per(t, lam).sum()

    t = thetas.clone().requires_grad_()
    (got,) = torch.autograd.grad(torch.compile(total, backend="aot_eager")(t, lams), t)
    for v in range(3):
        t1 = thetas[v].clone().requires_grad_()
        (expected,) = torch.autograd.grad(CASES["imle"][1](t1, float(lams[v])), t1)
        assert torch.equal(got[v], expected)
    assert not torch.equal(got[0], got[2])  # the slices' lam differ, and so do their gradients
