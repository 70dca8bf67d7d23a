"""Summaries of repeated measurements: median and spread, percentiles, differences."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    """Median and the inter-quartile range of one series of samples (ms, MiB, ...)."""

    n: int
    median: float
    p25: float
    p75: float
    p99: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(len(values), statistics.median(values), percentile(values, 25),
                   percentile(values, 75), percentile(values, 99), min(values), max(values))

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25

    def text(self, unit: str = "ms", digits: int = 1) -> str:
        """``12.3 ms (IQR 11.9-12.8, n=30)``"""
        f = f"{{:.{digits}f}}"
        return (f"{f.format(self.median)} {unit} (IQR {f.format(self.p25)}-"
                f"{f.format(self.p75)}, n={self.n})")


def paired_difference(with_: Sequence[float], without: Sequence[float]) -> Summary:
    """Per-round differences of interleaved A/B samples (round k of each side ran back to
    back, so a slow moment of the machine cancels out)."""
    if len(with_) != len(without):
        raise ValueError(f"unpaired samples: {len(with_)} vs {len(without)}")
    return Summary.of([a - b for a, b in zip(with_, without, strict=True)])


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf
