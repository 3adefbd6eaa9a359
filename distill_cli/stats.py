"""Confidence bounds shared by build-student (threshold calibration), gate and drift."""

from __future__ import annotations

import math
from statistics import NormalDist


def z_one_sided(confidence: float) -> float:
    """The normal quantile for a one-sided bound at `confidence` (0.95 -> 1.645)."""
    return NormalDist().inv_cdf(confidence)


def wilson_bounds(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """One-sided Wilson score bounds (lower, upper) for k successes in n trials, each at `confidence`.

    n == 0 gives (0.0, 1.0): no evidence either way.
    """
    if n == 0:
        return 0.0, 1.0
    z = z_one_sided(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    return wilson_bounds(k, n, confidence)[0]
