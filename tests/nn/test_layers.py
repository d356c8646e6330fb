"""`imle_fn.nn`: each layer is its functional estimator; noise from its generator, train / eval,
samples, state_dict, hyper-parameters, nn.Sequential, ensembles under functional_call + vmap."""

from __future__ import annotations

import copy
import functools
import inspect
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

import imle_fn
import imle_fn.nn as inn
from tests.helpers import gen

F64 = torch.float64
TOP2 = imle_fn.TopK(2)
THETA = torch.randn(4, 6, generator=gen(1), dtype=F64)
W = torch.randn(3, 4, 6, generator=gen(2), dtype=F64)
Y = imle_fn.map_solve(torch.randn(4, 6, generator=gen(3), dtype=F64), TOP2)


def _value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, ...]:
    t = THETA.clone().requires_grad_()
    out = fn(t)
    (grad,) = torch.autograd.grad(out, t)
    return out.detach(), grad


# name -> (layer, the same computation with the functional estimator, given the layer's noise)
NOISE = imle_fn.gumbel((3, 4, 6), generator=gen(4), dtype=F64)
KW: dict[str, Any] = {"lam": 0.7, "alpha": 0.9, "temperature": 0.8, "target_temperature": 0.6}
PAIRS: dict[str, tuple[Callable[[], inn.NoisyLayer], Callable[..., torch.Tensor]]] = {
    "IMLE": (
        lambda: inn.IMLE(TOP2, **KW, noise_type="gumbel", num_samples=3),
        lambda t, n: imle_fn.imle(t, n, TOP2, **KW),
    ),
    "CentralIMLE": (
        lambda: inn.CentralIMLE(TOP2, **KW, noise_type="gumbel", num_samples=3),
        lambda t, n: imle_fn.imle_central(t, n, TOP2, **KW),
    ),
    "STE": (
        lambda: inn.STE(TOP2, temperature=0.8, noise_type="gumbel", num_samples=3),
        lambda t, n: imle_fn.ste(t, n, TOP2, temperature=0.8),
    ),
    "AIMLE": (
        lambda: inn.AIMLE(TOP2, beta=0.5, step=0.0, alpha=0.9, noise_type="gumbel", num_samples=3),
        lambda t, n: imle_fn.aimle(t, n, TOP2, beta=0.5, alpha=0.9),
    ),
    "Perturbed": (
        lambda: inn.Perturbed(TOP2, sigma=0.5, noise_type="gumbel", num_samples=3),
        lambda t, n: imle_fn.perturbed(t, n, TOP2, sigma=0.5, noise_type="gumbel"),
    ),
    "FenchelYoungLoss": (
        lambda: inn.FenchelYoungLoss(TOP2, sigma=0.5, noise_type="gumbel", num_samples=3),
        lambda t, n: imle_fn.fenchel_young_loss(t, Y, n, TOP2, sigma=0.5).mean(),
    ),
}


def _call(layer: torch.nn.Module, t: torch.Tensor, noise: torch.Tensor | None = None) -> Any:
    if isinstance(layer, inn.FenchelYoungLoss):
        return layer(t, Y, noise)
    return layer(t, noise) if noise is not None else layer(t)


def _scalar(out: torch.Tensor) -> torch.Tensor:
    """A scalar loss of a layer's output (``[S, 4, 6]``, ``[4, 6]`` or already a scalar)."""
    if out.ndim == 0:
        return out
    return (out * (W if out.ndim == 3 else W[0])).sum()


@pytest.mark.parametrize("name", list(PAIRS))
def test_a_layer_with_given_noise_is_its_function(name: str) -> None:
    make, function = PAIRS[name]
    layer = make()
    got = _value_and_grad(lambda t: _scalar(_call(layer, t, NOISE)))
    expected = _value_and_grad(lambda t: _scalar(function(t, NOISE)))
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    assert expected[1].abs().sum() > 0


@pytest.mark.parametrize("name", list(PAIRS))
def test_a_layer_draws_the_samplers_noise_from_its_generator(name: str) -> None:
    make, function = PAIRS[name]
    layer = make()
    layer.manual_seed(7)
    noise = imle_fn.gumbel((3, 4, 6), generator=gen(7), dtype=F64)
    got = _value_and_grad(lambda t: _scalar(_call(layer, t)))
    expected = _value_and_grad(lambda t: _scalar(function(t, noise)))
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("noise_type", "sampler"),
    [
        ("sum_of_gamma", lambda s, g: imle_fn.sum_of_gamma(s, k=2.0, num_terms=5, generator=g)),
        ("gumbel", lambda s, g: imle_fn.gumbel(s, generator=g)),
        ("gaussian", lambda s, g: imle_fn.gaussian(s, generator=g)),
    ],
)
def test_sample_noise_is_the_samplers_draw(noise_type: str, sampler: Callable[..., Any]) -> None:
    layer = inn.IMLE(TOP2, noise_type=noise_type, num_terms=5, num_samples=3, generator=11)  # type: ignore[arg-type]
    theta = torch.zeros(4, 6)
    assert torch.equal(_drawn(layer, theta), sampler((3, 4, 6), gen(11)))
    one = inn.IMLE(TOP2, noise_type=noise_type, num_terms=5, generator=11)  # type: ignore[arg-type]
    assert torch.equal(_drawn(one, theta), sampler((4, 6), gen(11)))  # no sample dim
    assert _drawn(one, theta.double()).dtype == F64
    assert inn.IMLE(TOP2, noise_type=None).sample_noise(theta) is None


def _drawn(layer: inn.NoisyLayer, theta: torch.Tensor) -> torch.Tensor:
    noise = layer.sample_noise(theta)
    assert noise is not None
    return noise


def test_opcheck_layer_noise() -> None:
    """The draw's custom op (it mutates rng_state): schema, fake, autograd registration, AOT."""
    for noise_type, num_samples in [("sum_of_gamma", 3), ("gumbel", -1), ("gaussian", 2)]:
        torch.library.opcheck(
            torch.ops.imle_fn.layer_noise.default,
            (torch.randn(4, 6), gen(0).get_state(), noise_type, num_samples, 2.0, 10, "cpu"),
        )


def test_sum_of_gamma_takes_k_from_the_solver_or_the_argument() -> None:
    assert inn.IMLE(imle_fn.TopK(3)).k == 3.0
    assert inn.IMLE(imle_fn.Ranking(), k=2.5).k == 2.5
    with pytest.raises(ValueError, match="k: Sum-of-Gamma noise needs k"):
        inn.IMLE(imle_fn.Ranking())
    with pytest.raises(ValueError, match="k: expected a positive finite float"):
        inn.IMLE(TOP2, k=-1.0)
    assert inn.IMLE(imle_fn.Ranking(), noise_type="gumbel").k is None


def test_the_same_seed_gives_the_same_numbers() -> None:
    def run(layer: torch.nn.Module) -> list[torch.Tensor]:
        return [layer(THETA) for _ in range(3)]

    a, b = (
        run(inn.IMLE(TOP2, num_samples=2, generator=5)),
        run(inn.IMLE(TOP2, num_samples=2, generator=5)),
    )
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])  # fresh noise every call
    torch.manual_seed(3)
    c = run(inn.IMLE(TOP2, num_samples=2))  # generator=None: seeded from torch's generator
    torch.manual_seed(3)
    d = run(inn.IMLE(TOP2, num_samples=2))
    assert all(torch.equal(x, y) for x, y in zip(c, d, strict=True))
    given = gen(9)
    before = given.get_state()
    e = inn.IMLE(TOP2, noise_type="gumbel", num_samples=2, generator=given)
    assert torch.equal(_drawn(e, THETA), imle_fn.gumbel((2, 4, 6), generator=gen(9), dtype=F64))
    assert torch.equal(given.get_state(), before)  # the layer copied the state: given is not used


def test_state_dict_round_trips_the_noise_stream() -> None:
    layer = inn.IMLE(TOP2, num_samples=2, generator=1)
    layer(THETA)
    saved = copy.deepcopy(layer.state_dict())
    after = [layer(THETA) for _ in range(2)]
    fresh = inn.IMLE(TOP2, num_samples=2, generator=99)
    fresh.load_state_dict(saved)
    assert all(torch.equal(fresh(THETA), x) for x in after)
    assert set(saved) == {"rng_state"}  # hyper-parameters are not state
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh(THETA), after[0])


def test_deepcopy_copies_the_stream_and_manual_seed_restarts_it() -> None:
    layer = inn.IMLE(TOP2, num_samples=2, generator=1)
    twin = copy.deepcopy(layer)
    assert twin.rng_state is not layer.rng_state
    assert torch.equal(twin(THETA), layer(THETA))  # same state: same draws
    twin.manual_seed(2)
    assert not torch.equal(twin(THETA), layer(THETA))
    assert torch.equal(twin.manual_seed(1).rng_state, gen(1).get_state())


def test_the_stream_stays_on_the_cpu_when_the_layer_moves() -> None:
    layer = inn.IMLE(TOP2, num_samples=2, generator=1)
    state = layer.rng_state
    assert layer.to(F64).to("meta").rng_state is state and state.device.type == "cpu"
    assert layer.rng_state.dtype == torch.uint8


PERTURB_AND_MAP = ["IMLE", "CentralIMLE", "STE", "AIMLE"]


@pytest.mark.parametrize("name", PERTURB_AND_MAP)
def test_eval_returns_the_noise_free_map_state(name: str) -> None:
    make, function = PAIRS[name]
    layer = make().eval()
    state = layer.rng_state.clone()
    got = _value_and_grad(lambda t: (layer(t) * W[0]).sum())
    expected = _value_and_grad(lambda t: (function(t, None) * W[0]).sum())
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(layer(THETA), imle_fn.map_solve(THETA, TOP2))  # shaped like theta
    assert torch.equal(layer.rng_state, state)  # no noise drawn
    assert layer.train()(THETA).shape == (3, 4, 6)


def test_eval_of_perturbed_and_of_the_loss() -> None:
    perturbed = PAIRS["Perturbed"][0]().eval()
    assert torch.equal(perturbed(THETA), imle_fn.map_solve(THETA, TOP2))
    assert not perturbed(THETA.clone().requires_grad_()).requires_grad  # no noise, no gradient
    loss = PAIRS["FenchelYoungLoss"][0]().eval()
    got = _value_and_grad(lambda t: loss(t, Y))
    expected = _value_and_grad(lambda t: imle_fn.fenchel_young_loss(t, Y, None, TOP2).mean())
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_dbb_has_no_noise_and_no_modes() -> None:
    layer = inn.DBB(TOP2, lam=0.5)
    expected = _value_and_grad(lambda t: (imle_fn.dbb(t, TOP2, lam=0.5) * W[0]).sum())
    for mode in (True, False):
        layer.train(mode)
        got = _value_and_grad(lambda t: (layer(t) * W[0]).sum())
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert layer.state_dict() == {}


def _weighted(layer: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:
    return (layer(t) * W[0]).sum()


def test_reduction_mean_averages_the_samples() -> None:
    """The value is the samples' mean; the gradient is the estimator's for a loss summed over the
    samples (each sample gets the cotangent unscaled, the estimator averages), so its size does
    not shrink as 1/S: for STE it is the cotangent itself whatever S."""
    kept = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, generator=4)
    mean = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, reduction="mean", generator=4)
    value, grad = _value_and_grad(lambda t: (mean(t) * W[0]).sum())
    expected_value, _ = _value_and_grad(lambda t: (kept(t).mean(0) * W[0]).sum())
    kept = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, generator=4)  # the same draws again
    _, expected_grad = _value_and_grad(lambda t: (kept(t).sum(0) * W[0]).sum())
    assert torch.equal(value, expected_value) and torch.equal(grad, expected_grad)
    for s in (1, 4, 16):
        ste = inn.STE(TOP2, noise_type="gumbel", num_samples=s, reduction="mean", generator=0)
        _, g = _value_and_grad(functools.partial(_weighted, ste))
        torch.testing.assert_close(g, W[0].expand_as(THETA))
    assert mean(THETA).shape == THETA.shape
    with pytest.raises(ValueError, match="reduction: 'mean' averages over the sample dim"):
        inn.IMLE(TOP2, reduction="mean")


def test_hyper_parameters_are_checked_and_kept_as_float_and_cpu_tensor() -> None:
    layer = inn.IMLE(TOP2, lam=np.float32(0.5))  # type: ignore[arg-type]
    assert layer.lam == 0.5 and type(layer.lam) is float
    for value in (torch.tensor(0.25), np.float64(0.25), np.float16(0.25), 0.25):
        layer.lam = value  # type: ignore[assignment]
        assert layer.lam == 0.25
    tensor: torch.Tensor = layer.__dict__["_hyper_lam"]
    layer.lam = 2.0
    assert layer.__dict__["_hyper_lam"] is tensor and tensor.item() == 2.0  # updated in place
    with pytest.raises(ValueError, match="lam: expected > 0"):
        layer.lam = -1.0
    with pytest.raises(ValueError, match="lam: got a tensor that requires grad"):
        layer.lam = torch.tensor(1.0, requires_grad=True)
    assert layer.lam == 2.0  # a refused value changes nothing
    layer.to(F64)
    assert tensor.device.type == "cpu" and tensor.dtype == F64
    with pytest.raises(ValueError, match="decay: expected a number in"):
        inn.AIMLE(TOP2, decay=1.5)
    assert "lam=2.0" in repr(layer)


def test_constructor_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="noise_type: expected"):
        inn.IMLE(TOP2, noise_type="uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise_type: expected"):
        inn.Perturbed(TOP2, noise_type="sum_of_gamma")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_samples: expected >= 1"):
        inn.IMLE(TOP2, num_samples=0)
    with pytest.raises(TypeError, match=r"generator: expected a torch\.Generator, an int seed"):
        inn.IMLE(TOP2, generator=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction: expected"):
        inn.FenchelYoungLoss(TOP2, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma: expected > 0"):
        inn.Perturbed(TOP2, sigma=0.0)


def test_a_three_layer_sequential_model() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 6), inn.IMLE(TOP2, num_samples=3), torch.nn.Linear(6, 2)
    )
    out = model(torch.randn(4, 5))
    out.sum().backward()
    grad = model[0].weight.grad
    assert out.shape == (3, 4, 2) and isinstance(grad, torch.Tensor) and grad.abs().sum() > 0


def test_ensembles_with_functional_call_and_vmap() -> None:
    """E models stacked, vmapped over the model dim: each draws from its own stacked rng_state
    (the numbers of the model called on its own, and the stacked states advance); noise drawn
    outside and passed in equals a loop over the models."""

    class Model(torch.nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(5, 6, dtype=F64)
            self.select = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, generator=seed)

        def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
            return self.select(self.inp(x), noise)

    torch.manual_seed(1)
    models = [Model(seed) for seed in range(4)]
    params, buffers = stack_module_state(models)
    base = Model(0).to("meta")
    x = torch.randn(4, 5, generator=gen(5), dtype=F64)

    def drawn_inside(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    for _ in range(2):  # the stacked states advance like the models' own
        got = vmap(drawn_inside)(params, buffers)  # [E, S, B, n]; vmap's default randomness
        for e, model in enumerate(models):
            torch.testing.assert_close(got[e], model(x))  # the same draws: equal 0/1 states
            assert torch.equal(buffers["select.rng_state"][e], model.select.rng_state)
    assert not torch.equal(got[0], got[1])

    noise = imle_fn.gumbel((4, 3, 4, 6), generator=gen(6), dtype=F64)  # [E, S, B, n]

    def loss(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], n: torch.Tensor
    ) -> torch.Tensor:
        return (functional_call(base, (p, b), (x, n)) * W).sum()

    grads = vmap(torch.func.grad(loss))(params, buffers, noise)
    for e, model in enumerate(models):
        (model(x, noise[e]) * W).sum().backward()
        torch.testing.assert_close(grads["inp.weight"][e], model.inp.weight.grad)


def test_a_layer_inside_vmap_follows_vmaps_randomness() -> None:
    """One rng_state shared by every slice: vmap's randomness decides, as for torch.rand."""
    thetas = torch.randn(5, 4, 6, generator=gen(7), dtype=F64)
    layer = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, generator=2)
    with pytest.raises(RuntimeError, match=r"randomness='error'.*'different'"):
        vmap(layer)(thetas)  # vmap's default
    assert torch.equal(layer.rng_state, inn.IMLE(TOP2, generator=2).rng_state)  # nothing drawn

    same = vmap(layer, randomness="same")(thetas)  # [V, S, B, n]: one draw for all
    noise = imle_fn.gumbel((3, 4, 6), generator=gen(2), dtype=F64)
    for v in range(5):
        assert torch.equal(same[v], imle_fn.imle(thetas[v], noise, TOP2))

    layer.manual_seed(2)
    different = vmap(layer, randomness="different")(thetas)  # slice v: the stream's v-th draw
    stream = gen(2)
    draws = [imle_fn.gumbel((3, 4, 6), generator=stream, dtype=F64) for _ in range(5)]
    for v in range(5):
        assert torch.equal(different[v], imle_fn.imle(thetas[v], draws[v], TOP2))
    assert not torch.equal(different[0], different[1])
    after = inn.IMLE(TOP2, noise_type="gumbel", generator=stream)  # the stream advanced 5 draws
    assert torch.equal(layer.rng_state, after.rng_state)


def test_vmap_randomness_different_gives_per_slice_gradients() -> None:
    thetas = torch.randn(3, 4, 6, generator=gen(8), dtype=F64)
    target = torch.randn(4, 6, generator=gen(9), dtype=F64)
    layer = inn.IMLE(TOP2, noise_type="gumbel", num_samples=2, generator=4)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return ((layer(theta) - target) ** 2).sum()

    got = vmap(torch.func.grad(loss), randomness="different")(thetas)
    layer.manual_seed(4)
    want = torch.stack([torch.func.grad(loss)(t) for t in thetas])  # the same stream, in turn
    assert torch.equal(got, want)


@pytest.mark.parametrize("cls", [inn.IMLE, inn.AIMLE, inn.STE])
def test_a_vmapped_layer_compiles_whole(cls: Any) -> None:
    """vmap formats the function it maps (repr): the layer's repr must not stop dynamo."""
    thetas = torch.randn(4, 5, 6, generator=gen(10))
    layer, twin = (cls(TOP2, num_samples=3, generator=6) for _ in range(2))
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda t: vmap(layer, randomness="different")(t), backend="aot_eager", fullgraph=True
    )
    assert torch.equal(compiled(thetas), vmap(twin, randomness="different")(thetas))
    assert torch.equal(layer.rng_state, twin.rng_state)
    assert "TopK(k=2" in repr(layer)  # eagerly the solver's own repr


def test_per_slice_draws_from_unbatched_inputs() -> None:
    """vmap(randomness='different') batching nothing the draw sees: Gumbel and Gaussian draw per
    slice (torch's batched random ops); Sum-of-Gamma's host kernel cannot, and says so."""
    theta = torch.randn(5, 6, generator=gen(11))
    layer = inn.IMLE(TOP2, num_samples=3, generator=0)
    message = r"sum_of_gamma: called under torch.func.vmap\(randomness='different'\) with nothing"
    with pytest.raises(RuntimeError, match=message + r".*pass it in"):
        vmap(lambda i: layer(theta), randomness="different")(torch.arange(4))
    with pytest.raises(RuntimeError, match=message):
        vmap(lambda i: imle_fn.sum_of_gamma((3,), k=2.0) + i, randomness="different")(
            torch.arange(2)
        )
    for sampler in (imle_fn.gumbel, imle_fn.gaussian):
        draws = vmap(lambda i, f=sampler: f((50,)) + 0 * i, randomness="different")(torch.arange(3))
        assert draws.shape == (3, 50) and not torch.equal(draws[0], draws[1])
    gumbel_layer = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, generator=0)
    z = vmap(lambda i: gumbel_layer(theta), randomness="different")(torch.arange(4))
    assert z.shape == (4, 3, 5, 6) and not torch.equal(z[0], z[1])
    one = vmap(lambda i: layer(theta), randomness="same")(torch.arange(4))
    assert all(torch.equal(one[0], one[v]) for v in range(4))


def test_the_default_ste_layer_compiles_with_its_backward() -> None:
    """num_samples=None: the compiled backward returns the cotangent (main: an aliasing error)."""
    layer = inn.STE(TOP2, generator=0)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    theta = torch.randn(3, 6, generator=gen(12), requires_grad=True)
    w = torch.randn(3, 6, generator=gen(13))
    (compiled(theta) * w).sum().backward()
    assert theta.grad is not None and torch.equal(theta.grad, w)


PUBLIC = [getattr(inn, name) for name in inn.__all__ if inspect.isclass(getattr(inn, name))]
PAPERS = {
    "IMLE": "arXiv:2106.01798",
    "CentralIMLE": "arXiv:2106.01798",
    "AIMLE": "arXiv:2209.04862",
    "DBB": "arXiv:1912.02175",
    "Perturbed": "arXiv:2002.08676",
    "FenchelYoungLoss": "arXiv:2002.08676",
    "STE": "arXiv:1308.3432",
}


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_layer_docstrings_name_their_errors_and_paper(name: str) -> None:
    doc = inspect.getdoc(getattr(inn, name)) or ""
    assert "Raises:" in doc and "References:" in doc and PAPERS[name] in doc
    assert getattr(inn, name) in PUBLIC


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_layers_on_cuda() -> None:
    """On a GPU: the stream stays on the host, the noise lands on theta's device (a CPU
    generator's draws, copied; a CUDA generator draws there), AIMLE's state and sink move,
    and a compiled training forward gives the eager numbers."""
    theta = torch.randn(4, 6, generator=gen(1)).cuda().requires_grad_()
    layer = inn.IMLE(TOP2, num_samples=3, generator=0).cuda()
    assert layer.rng_state.device.type == "cpu"
    z = layer(theta)
    host = inn.IMLE(TOP2, num_samples=3, generator=0)
    assert z.device == theta.device and torch.equal(z.cpu(), host(theta.detach().cpu()))
    on_gpu = inn.IMLE(TOP2, noise_type="gumbel", num_samples=3, generator=torch.Generator("cuda"))
    on_gpu.manual_seed(5)
    expected = imle_fn.gumbel(
        (3, 4, 6), generator=torch.Generator("cuda").manual_seed(5), device="cuda"
    )
    assert torch.equal(_drawn(on_gpu, theta), expected)
    adaptive = inn.AIMLE(TOP2, step=0.1, generator=0).cuda()
    (adaptive(theta) * theta.detach()).sum().backward()
    assert adaptive.state.device.type == "cuda" and adaptive.beta != 1.0
    twin = copy.deepcopy(layer)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    for lam in (1.0, 0.5):
        layer.lam = twin.lam = lam
        assert torch.equal(compiled(theta), twin(theta))
