"""Paired comparisons of two variants over the same seeds, and the reproduction report's verdict rule.

For each seed s both variants share the teacher, the data order and the student's initialisation, so the paired
differences d_s = variant_s − baseline_s are compared, not the two means:

    d̄ = mean_s d_s,   95% interval d̄ ± t_{0.975, n−1} · sd(d) / √n

A claim is *confirmed* when the interval lies wholly on the side the paper claims (beyond ``margin``: 0 for "better
than", −1 point for "keeps accuracy"), *refuted* when it lies wholly on the other side, *unresolved* otherwise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# two-sided 95% quantiles of Student's t, by degrees of freedom (1–30); larger samples use the normal's 1.96
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class Paired:
    """Mean paired difference and its 95% interval, in the metric's own units, over ``n`` seeds."""

    mean: float
    low: float
    high: float
    n: int


def paired_difference(baseline: dict, variant: dict) -> Paired:
    """``baseline``, ``variant``: seed → dev metric. Only seeds both have are paired; at least two are needed."""
    seeds = sorted(set(baseline) & set(variant))
    if len(seeds) < 2:
        raise ValueError(f"a paired interval needs two or more common seeds, got {seeds} "
                         f"(baseline seeds {sorted(baseline)}, variant seeds {sorted(variant)})")
    d = [variant[s] - baseline[s] for s in seeds]
    mean, n = statistics.mean(d), len(d)
    t = T_975[n - 2] if n - 1 <= len(T_975) else 1.96
    half = t * statistics.stdev(d) / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, n)


def verdict(p: Paired, margin: float = 0.0, claim: str = "higher") -> str:
    """``claim="higher"``: the paper says the variant is above the baseline by more than ``margin`` (0: better;
    −0.01 on a 0–1 metric: keeps accuracy within a point). ``claim="differ"`` (two variants the paper ranks apart
    without a direction we can test): confirmed when the interval excludes 0, refuted when it lies within
    ±``margin`` (equivalent to that tolerance), unresolved otherwise. ``claim="same"`` (a change that should not matter,
    such as bf16 for fp32): confirmed when the interval lies within ±``margin``, refuted when it lies wholly beyond
    ``margin`` on one side, unresolved otherwise."""
    if claim == "same":
        if -abs(margin) < p.low and p.high < abs(margin):
            return "confirmed"
        return "refuted" if p.low > abs(margin) or p.high < -abs(margin) else "unresolved"
    if claim == "differ":
        if p.low > 0 or p.high < 0:
            return "confirmed"
        return "refuted" if -abs(margin) < p.low and p.high < abs(margin) else "unresolved"
    if claim != "higher":
        raise ValueError(f"claim={claim!r}: 'higher' (variant − baseline > margin), 'differ' or 'same'")
    if p.low > margin:
        return "confirmed"
    if p.high < margin:
        return "refuted"
    return "unresolved"


def paired_bootstrap(baseline: list[list[bool]], variant: list[list[bool]], reps: int = 2000, seed: int = 0
                     ) -> tuple[float, float]:
    """95% percentile interval of the accuracy difference, pooled over seeds, resampling the evaluation examples.

    ``baseline[s][i]``, ``variant[s][i]``: whether seed s's model got example i right (the same seeds in the same
    order). Each replicate draws the examples once, with replacement, for every seed and both variants, so the
    interval reflects the test set's sampling, which the t interval over seeds does not."""
    import numpy as np

    base, var = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if base.shape != var.shape or base.ndim != 2:
        raise ValueError(f"paired_bootstrap: shapes {base.shape} and {var.shape} must be equal (seeds × examples)")
    per_example = (var - base).mean(axis=0)
    rng = np.random.default_rng(seed)
    means = per_example[rng.integers(0, per_example.size, size=(reps, per_example.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
