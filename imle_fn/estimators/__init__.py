"""The estimator family behind one functional interface: each takes ``(theta, noise, solver)``.

`imle` (I-MLE, `implicit_mle`), `aimle` (adaptive I-MLE with its state as data, `adaptive`),
`imle_central` (central differences, `central`), `dbb` (blackbox backprop, `blackbox`), `perturbed`
(perturbed optimizers, `perturbed_optimizer`) with `fenchel_young_loss` (`fenchel_young`), `ste`
(straight-through, `straight_through`), and `simple` (SIMPLE: exact k-subset samples with the exact
marginals' gradient, `simple_estimator`; no solver, so it takes ``(theta, noise, k)``) over the exact
k-subset family in O(n k) (`topk_log_partition`, `topk_marginals`, `topk_marginals_vjp` in
`k_subset`; the sampler `topk_sample` in `k_subset_sampling`). Each module holds the estimator's VJP as a plain function
(``*_vjp``), its hyper-parameters as an `imle_fn.core.Estimator` and the public function that wires
them together with `imle_fn.core.estimate`.

Import rule: estimators import ``imle_fn.core`` and each other; never a solver, ``imle_fn.distributed``
or an app. A new estimator goes here as its own module.
"""

from imle_fn.estimators.adaptive import (
    AIMLE,
    aimle,
    aimle_lambda,
    aimle_state,
    aimle_update,
    aimle_vjp,
)
from imle_fn.estimators.blackbox import DBB, dbb, dbb_vjp
from imle_fn.estimators.central import CentralIMLE, imle_central, imle_central_vjp
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.estimators.implicit_mle import IMLE, imle, imle_vjp
from imle_fn.estimators.k_subset import topk_log_partition, topk_marginals, topk_marginals_vjp
from imle_fn.estimators.k_subset_sampling import topk_sample
from imle_fn.estimators.perturbed_optimizer import Perturbed, perturbed, perturbed_vjp
from imle_fn.estimators.simple_estimator import SIMPLE, simple, simple_vjp
from imle_fn.estimators.straight_through import STE, ste, ste_vjp

__all__ = [
    "AIMLE",
    "DBB",
    "IMLE",
    "SIMPLE",
    "STE",
    "CentralIMLE",
    "Perturbed",
    "aimle",
    "aimle_lambda",
    "aimle_state",
    "aimle_update",
    "aimle_vjp",
    "dbb",
    "dbb_vjp",
    "fenchel_young_loss",
    "imle",
    "imle_central",
    "imle_central_vjp",
    "imle_vjp",
    "perturbed",
    "perturbed_vjp",
    "simple",
    "simple_vjp",
    "ste",
    "ste_vjp",
    "topk_log_partition",
    "topk_marginals",
    "topk_marginals_vjp",
    "topk_sample",
]
