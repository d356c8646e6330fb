"""`imle_fn.nn` under torch.compile: a three-layer model learns a small task eagerly and compiled
(the same numbers), hyper-parameters anneal without recompiling, fullgraph with given noise."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import imle_fn
import imle_fn.nn as inn
from tests.estimators.test_hyper_parameters import compiled_graphs
from tests.helpers import gen

N, K, D_IN, D_OUT, BATCH = 12, 3, 16, 8, 64


def sparse_code_task(seed: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A discrete-bottleneck regression: a hidden 3-subset ``c`` of 12 codes; the input is a
    noisy linear view ``x = c A + 0.1 eps`` ([B, 16]), the target another one ``y = c B`` ([B, 8]).
    The model must find the subset (Linear -> top-3 -> Linear); MSE is 0 when it does."""
    g = gen(seed)
    a, b = torch.randn(N, D_IN, generator=g), torch.randn(N, D_OUT, generator=g)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.rand(BATCH, N, generator=g).argsort(-1)[:, :K]
        c = torch.zeros(BATCH, N).scatter_(1, chosen, 1.0)
        return c @ a + 0.1 * torch.randn(BATCH, D_IN, generator=g), c @ b

    return batch


def train(compiled: bool, steps: int = 100) -> tuple[list[float], float, float, int]:
    """Adam on the sampled MSE, lam annealed 10 -> 0.5; returns the training losses, the
    noise-free (eval mode) MSE on a held-out batch before and after, and the graphs compiled."""
    torch.manual_seed(0)
    batch = sparse_code_task(1)
    held_out = batch()
    layer = inn.IMLE(imle_fn.TopK(K), lam=10.0, num_samples=4, generator=2)
    model = torch.nn.Sequential(torch.nn.Linear(D_IN, N), layer, torch.nn.Linear(N, D_OUT))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    counter = CompileCounterWithBackend("aot_eager")
    run = torch.compile(model, backend=counter, fullgraph=True) if compiled else model

    def held_out_mse() -> float:
        model.eval()  # the compiled wrapper runs this module: its mode is the model's
        with torch.no_grad():
            value = ((run(held_out[0]) - held_out[1]) ** 2).mean().item()
        model.train()
        return value

    before, losses = held_out_mse(), []
    graphs_after_first_step = 0
    for step in range(steps):
        layer.lam = 10.0 * 0.97**step  # annealed every step: data, not a recompile
        x, y = batch()
        loss = ((run(x) - y) ** 2).mean()  # run(x): [S, B, 8] sampled predictions
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step == 0:
            graphs_after_first_step = compiled_graphs(counter)
    assert compiled_graphs(counter) == graphs_after_first_step  # no recompile in 100 steps
    return losses, before, held_out_mse(), compiled_graphs(counter)


def test_a_three_layer_model_learns_eagerly_and_compiled() -> None:
    eager, before, after, _ = train(compiled=False)
    first, last = sum(eager[:10]) / 10, sum(eager[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    assert after < 0.6 * before, (before, after)  # the noise-free model learned the codes too
    compiled, c_before, c_after, graphs = train(compiled=True)
    torch.testing.assert_close(compiled, eager)  # the same run, step for step
    assert (c_before, c_after) == pytest.approx((before, after))
    # one graph for eval mode (no noise), one for training (the draw is in the graph); not one
    # more while lam changed every step (checked in train)
    assert graphs == 2


LAYERS: dict[str, Callable[[], inn.NoisyLayer]] = {
    "IMLE": lambda: inn.IMLE(imle_fn.TopK(2), num_samples=3, generator=0),
    "CentralIMLE": lambda: inn.CentralIMLE(imle_fn.TopK(2), num_samples=3, generator=0),
    "STE": lambda: inn.STE(imle_fn.TopK(2), num_samples=3, generator=0),
    "Perturbed": lambda: inn.Perturbed(imle_fn.TopK(2), num_samples=3, generator=0),
    "FenchelYoungLoss": lambda: inn.FenchelYoungLoss(imle_fn.TopK(2), num_samples=3, generator=0),
}
ANNEALED = {
    "IMLE": "lam",
    "CentralIMLE": "lam",
    "STE": "temperature",
    "Perturbed": "sigma",
    "FenchelYoungLoss": "sigma",
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_fullgraph_with_given_noise_and_an_annealed_hyper_parameter(name: str) -> None:
    """The noise drawn outside (sample_noise), one hyper-parameter changed every call: one
    graph, and each call's value and gradient are eager's."""
    layer = LAYERS[name]()
    w = torch.randn(3, 4, 6, generator=gen(1))
    y = imle_fn.map_solve(torch.randn(4, 6, generator=gen(2)), imle_fn.TopK(2))

    def loss(theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, inn.FenchelYoungLoss):
            return layer(theta, y, noise)
        out = layer(theta, noise)
        return (out * (w if out.ndim == 3 else w[0])).sum()

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(loss, backend=counter, fullgraph=True)
    theta = torch.randn(4, 6, generator=gen(3))
    for value in (1.0, 0.5, 2.0, 0.25, 4.0):
        setattr(layer, ANNEALED[name], value)
        noise = layer.sample_noise(theta)
        assert noise is not None
        results = []
        for fn in (compiled, loss):
            t = theta.clone().requires_grad_()
            out = fn(t, noise)
            results.append((out.detach(), *torch.autograd.grad(out, t)))
        for a, b in zip(*results, strict=True):
            assert torch.equal(a, b), (name, value)
    assert compiled_graphs(counter) == 1


def test_eval_mode_compiles_fullgraph_and_dbb_always() -> None:
    theta = torch.randn(4, 6, generator=gen(4))
    for layer in (
        inn.IMLE(imle_fn.TopK(2)).eval(),
        inn.AIMLE(imle_fn.TopK(2)).eval(),
        inn.DBB(imle_fn.TopK(2)),
    ):
        torch._dynamo.reset()
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        t = theta.clone().requires_grad_()
        (compiled(t) * theta).sum().backward()
        t_eager = theta.clone().requires_grad_()
        (layer(t_eager) * theta).sum().backward()
        assert t.grad is not None and t_eager.grad is not None
        assert torch.equal(t.grad, t_eager.grad) and t.grad.abs().sum() > 0


def test_a_training_forward_compiles_fullgraph_with_the_eager_draws() -> None:
    """The layer draws inside the graph (the op imle_fn::layer_noise advances rng_state)."""
    for layer in (
        inn.IMLE(imle_fn.TopK(2), num_samples=3, generator=0),
        inn.Perturbed(imle_fn.TopK(2), num_samples=3, generator=0),
    ):
        twin = copy.deepcopy(layer)
        torch._dynamo.reset()
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        theta = torch.randn(4, 6, generator=gen(5))
        for _ in range(3):
            t, t_eager = theta.clone().requires_grad_(), theta.clone().requires_grad_()
            out, out_eager = compiled(t), twin(t_eager)
            (out * out.detach()).sum().backward()
            (out_eager * out_eager.detach()).sum().backward()
            assert torch.equal(out, out_eager) and torch.equal(t.grad, t_eager.grad)  # type: ignore[arg-type]
        assert torch.equal(layer.rng_state, twin.rng_state)


def test_inductor_compiles_a_noisy_layer_once_while_lam_anneals() -> None:
    """The default backend once (a cold inductor compile takes tens of seconds here): the noise
    op that mutates rng_state and the hyper-parameter tensor through inductor, five values of
    lam, one graph, the eager numbers."""
    layer = inn.IMLE(imle_fn.TopK(2), num_samples=3, generator=0)
    twin = copy.deepcopy(layer)
    w = torch.randn(3, 4, 6, generator=gen(6))
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(lambda t: (layer(t) * w).sum(), backend=counter, fullgraph=True)
    theta = torch.randn(4, 6, generator=gen(7))
    for lam in (2.0, 1.0, 0.5, 0.25, 0.125):
        layer.lam = twin.lam = lam
        t, t_eager = theta.clone().requires_grad_(), theta.clone().requires_grad_()
        out, out_eager = compiled(t), (twin(t_eager) * w).sum()
        out.backward()
        out_eager.backward()
        torch.testing.assert_close((out, t.grad), (out_eager, t_eager.grad))
    assert compiled_graphs(counter) == 1
    assert torch.equal(layer.rng_state, twin.rng_state)
