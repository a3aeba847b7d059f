"""Paired comparisons of two variants over the same seeds, and the reproduction report's verdict rule (design v2,
issue 28).

For each seed s both variants share the teacher, the data order and the student's initialisation, so the paired
differences d_s = variant_s − baseline_s are compared, not the two means. Over n seeds, with t_q the q-quantile of
Student's t with n − 1 degrees of freedom (``scipy.stats.t``):

    d̄ = mean_s d_s,   se = sd(d) / √n,   interval at two-sided level 1 − 2α:  d̄ ± t_{1−α} · se

The one-sided t-test of H0: d ≤ c has p = P(T > (d̄ − c) / se), that of H0: d ≥ c p = P(T < (d̄ − c) / se): p < α
exactly when the interval at level 1 − 2α lies above c (below c).

Every claim has a kind and a smallest effect of interest δ (1 point: 0.01 on a 0–1 metric):

    kind    the paper says                  confirmed when the interval   refuted when (and not confirmed) it
    higher  the variant beats the baseline  lies above 0                  lies below +δ (no gain of δ or more)
    keeps   it keeps accuracy within δ      lies above −δ                 lies below −δ
    differ  the two differ                  excludes 0                    lies inside ±δ
    same    the change does not matter      lies inside ±δ                lies above +δ or below −δ

*unresolved* otherwise. Each side is a one-sided test at α = 2.5% (which is the two-sided 95% interval), with the
p-values, for H0 written as the hypothesis rejected:

    kind    confirm p                            refute p
    higher  H0: d ≤ 0                            H0: d ≥ δ
    keeps   H0: d ≤ −δ                           H0: d ≥ −δ
    differ  min(H0: d ≤ 0, H0: d ≥ 0)            max(H0: d ≤ −δ, H0: d ≥ δ)   (the larger: both sides must hold)
    same    max(H0: d ≤ −δ, H0: d ≥ δ) (TOST)    min(H0: d ≤ δ, H0: d ≥ −δ)

The claims of one finding on one split are a family: Holm's step-down correction (statsmodels' ``multipletests``)
adjusts its confirm p-values, and separately its refute p-values. A claim is confirmed when its adjusted confirm p is
below α, refuted when it is not confirmed and its adjusted refute p is below α. With one claim this is the plain 95%
interval's rule above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

DELTA = 0.01  # the smallest effect of interest: 1 point on a 0–1 metric
ALPHA = 0.025  # one-sided, on each side: the two-sided 95% interval
KINDS = ("higher", "keeps", "differ", "same")


@dataclass(frozen=True)
class Paired:
    """The paired differences over ``n`` common seeds: their mean d̄ and its standard error se = sd(d) / √n, in the
    metric's own units."""

    mean: float
    se: float
    n: int

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """d̄ ± t_{(1 + level)/2, n−1} · se."""
        half = float(stats.t.ppf((1 + level) / 2, self.n - 1)) * self.se
        return self.mean - half, self.mean + half

    def p_above(self, c: float) -> float:
        """One-sided p-value of H0: d ≤ c (small when the seeds put d above c)."""
        if self.se == 0:  # every seed gave the same difference: t is ±∞, or 0/0 (no evidence) where d̄ = c
            return float(self.mean <= c)
        return float(stats.t.sf((self.mean - c) / self.se, self.n - 1))

    def p_below(self, c: float) -> float:
        """One-sided p-value of H0: d ≥ c (small when the seeds put d below c)."""
        if self.se == 0:
            return float(self.mean >= c)
        return float(stats.t.cdf((self.mean - c) / self.se, self.n - 1))


def paired_difference(baseline: dict, variant: dict) -> Paired:
    """``baseline``, ``variant``: seed → metric. Only seeds both have are paired; at least two are needed."""
    seeds = sorted(set(baseline) & set(variant))
    if len(seeds) < 2:
        raise ValueError(f"a paired interval needs two or more common seeds, got {seeds} "
                         f"(baseline seeds {sorted(baseline)}, variant seeds {sorted(variant)})")
    d = np.array([variant[s] - baseline[s] for s in seeds])
    return Paired(float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size)


def p_values(p: Paired, kind: str, delta: float = DELTA) -> tuple[float, float]:
    """(confirm p, refute p) of one claim, unadjusted: the module's second table."""
    if kind == "higher":
        return p.p_above(0.0), p.p_below(delta)
    if kind == "keeps":
        return p.p_above(-delta), p.p_below(-delta)
    if kind == "differ":
        return min(p.p_above(0.0), p.p_below(0.0)), max(p.p_above(-delta), p.p_below(delta))
    if kind == "same":
        return max(p.p_above(-delta), p.p_below(delta)), min(p.p_above(delta), p.p_below(-delta))
    raise ValueError(f"kind={kind!r}: one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict within its family. ``p_confirm``, ``p_refute``: unadjusted; ``holm_confirm``,
    ``holm_refute``: Holm-adjusted. ``confirm_step``, ``refute_step``: (level, low, high), the t interval at the
    two-sided level of the claim's step in Holm's procedure over that side's p-values (rank i of m: 1 − 0.05 /
    (m − i + 1)); the step rejects when it clears that side, so a claim is confirmed when its confirm step's interval
    and those of every earlier step clear their claims' sides. ``below_delta``: a confirmed ``higher`` whose gain is
    also shown to be less than δ (its refute test rejects too)."""

    verdict: str
    p_confirm: float
    p_refute: float
    holm_confirm: float
    holm_refute: float
    confirm_step: tuple[float, float, float]
    refute_step: tuple[float, float, float]
    below_delta: bool


def _steps(p_values: np.ndarray) -> np.ndarray:
    """The two-sided level of each p-value's step in Holm's procedure: 1 − 2α / (m − i + 1) at rank i of m."""
    m = p_values.size
    rank = np.empty(m, dtype=int)
    rank[np.argsort(p_values, kind="stable")] = np.arange(m)  # ties: the same adjusted p whatever their order
    return 1 - 2 * ALPHA / (m - rank)


def verdicts(family: list[tuple[Paired, str, float]]) -> list[Verdict]:
    """The verdicts of a family of claims, each given as (paired differences, kind, δ), in the family's order."""
    confirm, refute = (np.array(side) for side in zip(*(p_values(p, kind, delta) for p, kind, delta in family)))
    confirmed, holm_confirm = multipletests(confirm, alpha=ALPHA, method="holm")[:2]
    refuted, holm_refute = multipletests(refute, alpha=ALPHA, method="holm")[:2]
    out = []
    for i, ((p, kind, _), c_level, r_level) in enumerate(zip(family, _steps(confirm), _steps(refute))):
        verdict = "confirmed" if confirmed[i] else "refuted" if refuted[i] else "unresolved"
        out.append(Verdict(verdict, float(confirm[i]), float(refute[i]), float(holm_confirm[i]),
                           float(holm_refute[i]), (float(c_level), *p.interval(c_level)),
                           (float(r_level), *p.interval(r_level)),
                           bool(kind == "higher" and confirmed[i] and refuted[i])))
    return out


def two_level_bootstrap(baseline: list[list[bool]], variant: list[list[bool]], reps: int = 10_000, seed: int = 0
                        ) -> tuple[float, float]:
    """95% percentile interval of the accuracy difference when both the training runs and the test set are redrawn.

    ``baseline[s][i]``, ``variant[s][i]``: whether seed s's model got example i right (the same seeds in the same
    order, the same examples). A replicate draws n seeds with replacement, then for each drawn seed N examples with
    replacement, the same ones for both arms of that seed, and takes

        mean over the drawn seeds s* of  mean over the drawn examples i* of (variant[s*][i*] − baseline[s*][i*]).

    The per-example differences take few values (−1, 0, 1), so drawing N examples of seed s comes down to drawing how
    many of each value: a multinomial with seed s's shares of them, the same distribution as drawing the indices at
    reps × n draws instead of reps × n × N.

    Not ``scipy.stats.bootstrap``: it resamples one level (observations along one axis, paired across samples); the
    draw of examples inside each drawn seed has no place in it short of a statistic that draws its own random numbers,
    which neither its ``random_state`` nor its BCa interval would know of."""
    base, var = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if base.shape != var.shape or base.ndim != 2 or base.size == 0:
        raise ValueError(f"two_level_bootstrap: shapes {base.shape} and {var.shape} must be equal (seeds × examples)")
    n, examples = base.shape
    values, which = np.unique(var - base, return_inverse=True)
    shares = (which.reshape(n, examples, 1) == np.arange(values.size)).mean(axis=1)  # seed × value
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n, size=(reps, n))
    counts = rng.multinomial(examples, shares[drawn])  # reps × n × values
    means = (counts @ values / examples).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
