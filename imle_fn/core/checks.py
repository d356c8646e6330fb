"""Hyper-parameter validation shared by the estimators (errors name the argument and the value)."""

from __future__ import annotations

import math

__all__ = ["check_finite", "check_nonnegative", "check_positive"]


def check_finite(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is finite and > 0."""
    result = check_finite(name, value)
    if result <= 0:
        raise ValueError(f"{name}: expected > 0, got {value!r}")
    return result


def check_nonnegative(name: str, value: object) -> float:
    """``value`` as a float; ValueError unless it is finite and >= 0."""
    result = check_finite(name, value)
    if result < 0:
        raise ValueError(f"{name}: expected >= 0, got {value!r}")
    return result
