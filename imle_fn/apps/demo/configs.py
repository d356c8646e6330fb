"""The reference's learning configurations and hyper-parameters (uclnlp/torch-imle's example)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_CONFIGS",
    "REFERENCE_CONFIGS",
    "REFERENCE_HYPER",
    "REFERENCE_TEMPERATURES",
    "Hyper",
    "LearningConfig",
]


@dataclass(frozen=True)
class LearningConfig:
    """One learning run of the reference: noise temperatures and number of samples per step."""

    input_temperature: float
    target_temperature: float
    num_samples: int

    def __post_init__(self) -> None:
        if self.input_temperature < 0 or self.target_temperature < 0:
            raise ValueError(f"temperatures: expected >= 0, got {self.temperatures}")
        if self.input_temperature == 0 and self.target_temperature > 0:
            raise ValueError(
                "temperatures: a target temperature > 0 needs an input temperature > 0 (the target"
                f" reuses the input's noise), got {self.temperatures}"
            )
        if self.num_samples < 1:
            raise ValueError(f"num_samples: expected >= 1, got {self.num_samples}")

    @property
    def temperatures(self) -> tuple[float, float]:
        return (self.input_temperature, self.target_temperature)

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``"tau 1/1, S=10"``."""
        return f"tau {self.input_temperature:g}/{self.target_temperature:g}, S={self.num_samples}"


REFERENCE_TEMPERATURES: tuple[tuple[float, float], ...] = ((0, 0), (1, 1), (2, 2), (5, 5), (5, 0))
"""(input, target) noise temperatures of the reference's learning animations."""
REFERENCE_CONFIGS: tuple[LearningConfig, ...] = tuple(
    LearningConfig(t_in, t_out, s) for s in (1, 10, 100) for t_in, t_out in REFERENCE_TEMPERATURES
)
"""All 15 reference configurations (every temperature pair with 1, 10 and 100 samples)."""
DEFAULT_CONFIGS: tuple[LearningConfig, ...] = tuple(
    c for c in REFERENCE_CONFIGS if c.num_samples <= 10
)
"""The demo's default subset: every temperature pair with 1 and 10 samples."""


@dataclass(frozen=True)
class Hyper:
    """The reference's hyper-parameters (target alpha, beta = lam, SoG noise, Adam, steps)."""

    lam: float = 10.0
    alpha: float = 1.0
    k: float = 1.3 * 16
    num_terms: int = 100
    lr: float = 0.005
    steps: int = 1100


REFERENCE_HYPER = Hyper()
"""The reference's hyper-parameters, as used by default."""
