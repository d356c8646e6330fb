"""`imle_fn.core.solving.map_solve`: one solver call per pass, dtype/device kept, solver output validated."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.func import vmap

from imle_fn import as_solver
from imle_fn.core.solving import map_solve
from tests.helpers import CountingArgmax, TorchTopK


def test_matches_argmax_and_folds_batch_dims(argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    z = map_solve(theta, argmax_solver)
    assert argmax_solver.calls == [(12, 5)]
    assert torch.equal(z, torch.nn.functional.one_hot(theta.argmax(-1), 5).to(theta.dtype))


def test_nested_vmap_is_one_call(argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(2, 3, 4, 5)
    z = vmap(vmap(lambda t: map_solve(t, argmax_solver)))(theta)
    assert argmax_solver.calls == [(24, 5)]
    assert torch.equal(z, map_solve(theta, argmax_solver))


def test_vmap_in_dims_none_and_moved_dims(topk_solver: TorchTopK) -> None:
    theta = torch.randn(5, 3)
    shift = torch.randn(4, 5)
    out = vmap(lambda s: map_solve(theta + s[:, None], topk_solver), in_dims=0)(shift)
    loop = torch.stack([map_solve(theta + s[:, None], topk_solver) for s in shift])
    assert torch.equal(out, loop)
    moved = vmap(lambda t: map_solve(t, topk_solver), in_dims=1)(
        theta.T.reshape(3, 5, 1).expand(3, 5, 2)
    )
    assert moved.shape == (5, 3, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_dtype_kept(dtype: torch.dtype, argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(4, 6).to(dtype)
    z = map_solve(theta, argmax_solver)
    assert z.dtype == dtype and z.device == theta.device
    assert torch.equal(z.float().argmax(-1), theta.float().argmax(-1))


def test_not_differentiable(argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(3, 4, requires_grad=True)
    assert not map_solve(theta, argmax_solver).requires_grad


def test_empty_batch_calls_nothing(argmax_solver: CountingArgmax) -> None:
    z = map_solve(torch.empty(0, 5), argmax_solver)
    assert z.shape == (0, 5) and argmax_solver.calls == []


def test_non_contiguous_input(argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(5, 4).T  # [4, 5], non-contiguous
    assert torch.equal(map_solve(theta, argmax_solver).argmax(-1), theta.argmax(-1))


def test_plain_callable_needs_event_ndim() -> None:
    def fn(t: np.ndarray) -> np.ndarray:
        return t > 0

    with pytest.raises(ValueError, match="event_ndim"):
        map_solve(torch.randn(2, 3), fn)
    assert torch.equal(
        map_solve(torch.tensor([[1.0, -1.0]]), fn, event_ndim=1), torch.tensor([[1.0, 0.0]])
    )


def test_solver_cannot_mutate_theta() -> None:
    def mutating(t: np.ndarray) -> np.ndarray:
        t[...] = 0.0
        return t

    theta = torch.randn(2, 3)
    before = theta.clone()
    with pytest.raises(ValueError, match="read-only"):
        map_solve(theta, mutating, event_ndim=1)
    assert torch.equal(theta, before)


def test_identity_solver_does_not_alias() -> None:
    theta = torch.randn(2, 3)
    z = map_solve(theta, as_solver(lambda t: t, event_ndim=1, backend="torch"))
    z += 1
    assert not torch.equal(z, theta)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda t: t[:, :-1], "returned shape"),
        (
            lambda t: np.where(np.arange(t.shape[0])[:, None] == 2, np.nan, t),
            "non-finite values at instance 2",
        ),
        (lambda t: np.full_like(t, np.inf), "non-finite values at instance 0"),
    ],
)
def test_bad_solver_output(bad: Callable[[np.ndarray], np.ndarray], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        map_solve(torch.randn(4, 3), bad, event_ndim=1)


def test_nan_scores_name_the_instance(argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(3, 2, 4)
    theta[2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"theta: contains NaN at instance \(2, 1\)"):
        map_solve(theta, argmax_solver)
    assert argmax_solver.calls == []


def test_infinite_scores_are_legal(argmax_solver: CountingArgmax) -> None:
    theta = torch.tensor([[-float("inf"), 0.0, 1.0]])
    assert torch.equal(map_solve(theta, argmax_solver), torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.parametrize(
    ("theta", "exc"),
    [(np.zeros((2, 3)), TypeError), (torch.zeros(2, 3, dtype=torch.long), TypeError)],
)
def test_bad_theta(theta: object, exc: type, argmax_solver: CountingArgmax) -> None:
    with pytest.raises(exc, match="theta"):
        map_solve(theta, argmax_solver)  # type: ignore[arg-type]


def test_too_few_dims(argmax_solver: CountingArgmax) -> None:
    with pytest.raises(ValueError, match="at least 2 dims"):
        map_solve(torch.zeros(3), argmax_solver, event_ndim=2)


def test_compiled_equals_eager(argmax_solver: CountingArgmax) -> None:
    theta = torch.randn(3, 4, 5)

    def f(t: torch.Tensor) -> torch.Tensor:
        return vmap(lambda u: map_solve(2 * u, argmax_solver))(t)

    assert torch.equal(torch.compile(f, fullgraph=True)(theta), f(theta))


def test_opcheck_map_solve(argmax_solver: CountingArgmax) -> None:
    from imle_fn.core.solving import solver_key

    handle, event_ndim = solver_key(argmax_solver, None)
    for theta in (torch.randn(3, 4, 5), torch.randn(5, 4, 3).permute(2, 1, 0)):
        torch.library.opcheck(
            torch.ops.imle_fn.map_solve.default,
            (theta, handle, event_ndim),
            test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
        )


def test_opcheck_estimate(topk_solver: TorchTopK) -> None:
    from imle_fn.core.solving import solver_key
    from imle_fn.core.wiring import _pack
    from imle_fn.estimators.implicit_mle import IMLE

    handle, event_ndim = solver_key(topk_solver, None)
    estimator = IMLE(lam=0.5)
    flags, hyper = _pack(estimator)  # the float fields as a [4] float64 tensor
    assert hyper.tolist() == [0.5, 1.0, 1.0, 1.0] and flags == [1.0]
    theta = torch.randn(5, 4, 6).permute(1, 0, 2).requires_grad_()
    noise = torch.randn(3, 4, 5, 6)
    torch.library.opcheck(
        torch.ops.imle_fn.estimate.default,
        (theta, noise, estimator.name, flags, hyper, handle, event_ndim),
    )


def test_opcheck_estimate_vjp(topk_solver: TorchTopK) -> None:
    """The compiled backward's op: schema, fake and static AOT dispatch."""
    from imle_fn.core.solving import solver_key
    from imle_fn.core.wiring import _pack
    from imle_fn.estimators.adaptive import AIMLE

    handle, event_ndim = solver_key(topk_solver, None)
    flags, hyper = _pack(AIMLE(beta=0.5))
    theta = torch.randn(4, 6)
    noise = torch.randn(3, 4, 6)
    out = torch.ops.imle_fn.estimate(theta, noise, "aimle", flags, hyper, handle, event_ndim)[0]
    dout = torch.randn(3, 4, 6)
    residual = torch.empty(0)
    for state in (None, torch.tensor([0.5, 1.0])):
        torch.library.opcheck(
            torch.ops.imle_fn.estimate_vjp.default,
            (dout, theta, noise, out, residual, "aimle", flags, hyper, handle, event_ndim, state),
            test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
        )
