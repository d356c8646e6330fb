"""`imle_fn.nn.AIMLE`: its ``[beta, ema]`` buffer follows exactly the trajectory of the state
threaded by hand with `imle_fn.aimle` / `imle_fn.aimle_update`, once per backward; eval, no_grad,
state_dict, dtype moves and torch.compile."""

from __future__ import annotations

import copy

import torch

import imle_fn
import imle_fn.nn as inn
from tests.helpers import gen

F64 = torch.float64
TOP2 = imle_fn.TopK(2)
HYPER = {"target": 1.0, "step": 0.05, "decay": 0.9}


def _layer(**kw: object) -> inn.AIMLE:
    options = {"beta": 0.5, **HYPER, "noise_type": "gumbel", "num_samples": 3, "generator": 3}
    return inn.AIMLE(TOP2, **{**options, **kw}, dtype=F64)  # type: ignore[arg-type]


def _data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 5, generator=gen(100 + step), dtype=F64), torch.randn(
        3, 4, 6, generator=gen(200 + step), dtype=F64
    )


def _by_hand(linear: torch.nn.Linear, steps: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The recipe of the aimle docstring: a state that requires grad, then aimle_update."""
    g = gen(3)
    state = imle_fn.aimle_state(0.5, dtype=F64)
    states, grads = [], []
    for step in range(steps):
        x, w = _data(step)
        noise = imle_fn.gumbel((3, 4, 6), generator=g, dtype=F64)
        st = state.clone().requires_grad_()
        linear.zero_grad()
        (imle_fn.aimle(linear(x), noise, TOP2, st) * w).sum().backward()
        state = imle_fn.aimle_update(st.detach(), st.grad, **HYPER)
        states.append(state)
        grads.append(_grad(linear))
    return states, grads


def _grad(linear: torch.nn.Linear) -> torch.Tensor:
    assert linear.weight.grad is not None
    return linear.weight.grad.clone()


def _by_layer(
    linear: torch.nn.Linear, layer: inn.AIMLE, steps: int, *, compiled: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    model = torch.nn.Sequential(linear, layer)
    run = torch.compile(model, backend="aot_eager", fullgraph=True) if compiled else model
    states, grads = [], []
    for step in range(steps):
        x, w = _data(step)
        linear.zero_grad()
        (run(x) * w).sum().backward()
        states.append(layer.state.clone())
        grads.append(_grad(linear))
    return states, grads


def test_the_state_follows_the_hand_threaded_trajectory() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(5, 6, dtype=F64)
    expected = _by_hand(copy.deepcopy(linear), 6)
    got = _by_layer(copy.deepcopy(linear), _layer(), 6)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1], strict=True):
        assert torch.equal(a, b)
    betas = [float(s[0]) for s in expected[0]]
    assert len(set(betas)) > 2  # beta really moves, both ways or one way, step by step


def test_compiled_training_follows_the_same_trajectory() -> None:
    """torch.compile(fullgraph=True): the noise drawn in the graph, the state updated by the hook
    of its statistics sink after the compiled backward."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(5, 6, dtype=F64)
    expected = _by_hand(copy.deepcopy(linear), 4)
    got = _by_layer(copy.deepcopy(linear), _layer(), 4, compiled=True)
    for a, b in zip(got[0] + got[1], expected[0] + expected[1], strict=True):
        assert torch.equal(a, b)


def test_one_update_per_backward_with_the_statistics_of_every_call() -> None:
    """Two calls in one forward: the hand-threaded state is passed to both and updated once."""
    theta = torch.randn(4, 6, generator=gen(1), dtype=F64)
    w = torch.randn(4, 6, generator=gen(2), dtype=F64)
    layer = _layer(noise_type=None, num_samples=None, step=0.1)
    (layer(theta) * w + layer(2 * theta) * w).sum().backward()
    st = imle_fn.aimle_state(0.5, dtype=F64).requires_grad_()
    (
        imle_fn.aimle(theta, None, TOP2, st) * w + imle_fn.aimle(2 * theta, None, TOP2, st) * w
    ).sum().backward()
    assert st.grad is not None and st.grad[1] == 8  # both calls' (instance, sample) pairs
    expected = imle_fn.aimle_update(st.detach(), st.grad, **{**HYPER, "step": 0.1})
    assert torch.equal(layer.state, expected)


def test_eval_no_grad_and_unused_forwards_leave_the_state() -> None:
    theta = torch.randn(4, 6, generator=gen(1), dtype=F64, requires_grad=True)
    layer = _layer(step=0.1)
    before = layer.state.clone()
    (layer.eval()(theta) * 2).sum().backward()  # eval: beta used, not adapted
    with torch.no_grad():
        layer.train()(theta)
    layer(theta)  # a training forward nobody differentiates
    assert torch.equal(layer.state, before)
    (layer(theta) * theta.detach()).sum().backward()
    assert not torch.equal(layer.state, before)


def test_state_dict_round_trips_state_and_noise() -> None:
    theta = torch.randn(4, 6, generator=gen(1), dtype=F64, requires_grad=True)
    layer = _layer(step=0.1)
    for _ in range(2):
        (layer(theta) * theta.detach()).sum().backward()
    saved = copy.deepcopy(layer.state_dict())
    assert set(saved) == {"state", "rng_state"}
    fresh = _layer(beta=3.0, generator=42, step=0.1)  # hyper-parameters are not state
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.state, layer.state) and fresh.beta == layer.beta
    for module in (layer, fresh):
        (module(theta) * theta.detach()).sum().backward()
    assert torch.equal(fresh.state, layer.state)  # same noise, same statistics, same update


def test_the_state_moves_with_the_layer() -> None:
    layer = _layer(step=0.1).float()
    assert layer.state.dtype == torch.float32
    theta = torch.randn(4, 6, generator=gen(1), requires_grad=True)
    (layer(theta) * theta.detach()).sum().backward()
    assert layer.state.dtype == torch.float32 and layer.beta != 0.5
    twin = copy.deepcopy(layer)
    assert torch.equal(twin.state, layer.state)
    (twin(theta) * theta.detach()).sum().backward()  # the copy updates its own state only
    assert not torch.equal(twin.state, layer.state)


def test_under_functional_call_the_state_is_the_callers_to_thread() -> None:
    """Stacked AIMLE states under functional_call + vmap: the layers' own buffers stay, and the
    gradient of the stacked states is each model's statistics, as for imle_fn.aimle."""
    theta = torch.randn(3, 4, 6, generator=gen(1), dtype=F64)
    w = torch.randn(3, 4, 6, generator=gen(2), dtype=F64)
    layers = [_layer(noise_type=None, num_samples=None, beta=0.5 * (e + 1)) for e in range(3)]
    _, buffers = torch.func.stack_module_state(layers)
    base = copy.deepcopy(layers[0])

    def loss(b: dict[str, torch.Tensor], t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (torch.func.functional_call(base, b, (t,)) * w).sum()

    states = {"state": buffers["state"]}  # [E, 2]; rng_state (uint8) takes no gradient
    grads = torch.func.vmap(torch.func.grad(loss))(states, theta, w)
    for e, layer in enumerate(layers):
        st = imle_fn.aimle_state(0.5 * (e + 1), dtype=F64).requires_grad_()
        (imle_fn.aimle(theta[e], None, TOP2, st) * w[e]).sum().backward()
        assert st.grad is not None and torch.equal(grads["state"][e], st.grad)
        assert torch.equal(layer.state, imle_fn.aimle_state(0.5 * (e + 1), dtype=F64))
    assert torch.equal(base.state, layers[0].state)
