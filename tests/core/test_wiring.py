"""The estimator wiring: an estimator defined WITHOUT ``from __future__ import annotations``.

This module deliberately has no ``from __future__ import annotations``: its dataclass fields carry
real types, not strings, and ``Estimator.from_params`` (used inside the custom op under
``torch.compile``) must still rebuild the estimator from its parameters.
"""

import dataclasses
from typing import ClassVar

import torch

from imle_fn.core import Estimator, Saved, estimate
from imle_fn.core.wiring import PerturbAndMAP, reduce_to_theta
from imle_fn.solvers import TopK


@dataclasses.dataclass(frozen=True)
class ScaledSTE(PerturbAndMAP, Estimator):
    """Straight-through with the cotangent scaled: dtheta = scale * mean_s dz (a test estimator)."""

    name: ClassVar[str] = "test_scaled_ste"
    scale: float = 1.0
    temperature: float = 1.0
    flip: bool = False
    repeats: int = 1

    def vjp(self, dout: torch.Tensor, saved: Saved) -> torch.Tensor:
        sign = -1.0 if self.flip else 1.0
        return reduce_to_theta(sign * self.scale * self.repeats * dout, saved.theta, saved.noise)


def test_from_params_restores_real_field_types() -> None:
    est = ScaledSTE(2.5, 0.0, True, 3)
    back = ScaledSTE.from_params(est.params())
    assert back == est
    assert type(back.flip) is bool and type(back.repeats) is int and type(back.scale) is float


def test_estimator_without_future_annotations_runs_eager_and_compiled() -> None:
    theta = torch.tensor([[0.3, 1.0, -0.2]], requires_grad=True)
    est = ScaledSTE(scale=3.0, temperature=0.0, flip=True, repeats=2)
    top1 = TopK(1)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return (estimate(est, t, None, top1) * torch.tensor([1.0, 2.0, 3.0])).sum()

    (eager,) = torch.autograd.grad(loss(theta), theta)
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    (from_compiled,) = torch.autograd.grad(compiled(theta), theta)
    expected = -6.0 * torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(eager, expected)
    torch.testing.assert_close(from_compiled, expected)
