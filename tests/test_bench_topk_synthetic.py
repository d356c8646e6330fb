"""bench/bench_topk_synthetic.py: the two forms of the loss and what each estimator sees of them."""

from __future__ import annotations

import pytest
import torch

from bench.bench_topk_synthetic import STATES, gradient_fn, problem, run, state_loss
from imle_fn.core.noise import sum_of_gamma
from imle_fn.solvers.topk import TopK


def test_the_forms_differ_by_a_constant_on_the_states() -> None:
    b, _ = problem(3)
    quadratic = state_loss(STATES[:, None], b, "quadratic")  # [252, 3]
    linear = state_loss(STATES[:, None], b, "linear")
    torch.testing.assert_close(linear, quadratic - (b**2).sum(-1))
    with pytest.raises(ValueError, match="loss: expected one of"):
        gradient_fn("imle", 1, loss="cubic")


def test_the_exact_gradient_is_the_same_in_both_forms() -> None:
    b, theta = problem(4)
    g = torch.Generator()
    torch.testing.assert_close(
        gradient_fn("exact", 1, loss="linear")(theta, b, g),
        gradient_fn("exact", 1, loss="quadratic")(theta, b, g),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("samples", [1, 3])
def test_what_the_estimators_see_of_the_linear_form(samples: int) -> None:
    b, theta = problem(4)
    # STE passes dL/dz through: 1 - 2b, the same for every sample.
    ste = gradient_fn("ste", samples, loss="linear")(theta, b, torch.Generator().manual_seed(0))
    torch.testing.assert_close(ste, 1 - 2 * b, rtol=0, atol=1e-12)
    # I-MLE: mean_s (z_s - topk(theta + eps_s - lam (1 - 2b))) / lam, with lam = 2.
    g = torch.Generator().manual_seed(1)
    got = gradient_fn("imle", samples, loss="linear")(theta, b, g)
    g = torch.Generator().manual_seed(1)
    eps = sum_of_gamma((samples, *theta.shape), k=5.0, num_terms=10, generator=g, dtype=b.dtype)
    topk = TopK(5)
    z, target = topk(theta + eps), topk(theta + eps - 2.0 * (1 - 2 * b))
    torch.testing.assert_close(got, ((z - target) / 2.0).mean(0), rtol=0, atol=1e-12)
    quadratic = gradient_fn("imle", samples, loss="quadratic")(
        theta, b, torch.Generator().manual_seed(1)
    )
    assert not torch.equal(quadratic, got)  # the forms differ for I-MLE


def test_runs_are_seeded() -> None:
    first = run("imle", runs=4, steps=3, lr=0.75, samples=2, loss="linear")
    again = run("imle", runs=4, steps=3, lr=0.75, samples=2, loss="linear")
    assert torch.equal(first, again) and first.shape == (4, 4)
