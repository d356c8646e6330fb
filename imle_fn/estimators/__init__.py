"""The estimator family behind one functional interface: each takes ``(theta, noise, solver)``.

`imle_fn.imle` (I-MLE) plus: `aimle` (adaptive I-MLE, state as data), `imle_central` (central
differences), `dbb` (blackbox backprop), `perturbed` (perturbed optimizers) with
`fenchel_young_loss`, and `ste` (straight-through).
"""

from imle_fn.estimators.adaptive import AIMLE, aimle, aimle_state, aimle_update, aimle_vjp
from imle_fn.estimators.blackbox import DBB, dbb, dbb_vjp
from imle_fn.estimators.central import CentralIMLE, imle_central, imle_central_vjp
from imle_fn.estimators.fenchel_young import fenchel_young_loss
from imle_fn.estimators.perturbed_optimizer import Perturbed, perturbed, perturbed_vjp
from imle_fn.estimators.straight_through import STE, ste, ste_vjp

__all__ = [
    "AIMLE",
    "DBB",
    "STE",
    "CentralIMLE",
    "Perturbed",
    "aimle",
    "aimle_state",
    "aimle_update",
    "aimle_vjp",
    "dbb",
    "dbb_vjp",
    "fenchel_young_loss",
    "imle_central",
    "imle_central_vjp",
    "perturbed",
    "perturbed_vjp",
    "ste",
    "ste_vjp",
]
