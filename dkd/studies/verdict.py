"""Paired comparisons of two variants over the same seeds, and the reproduction report's verdict rule (design v2,
issue 28).

For each seed s both variants share the teacher, the data order and the student's initialisation, so the paired
differences d_s = variant_s − baseline_s are compared, not the two means. Over n seeds, with t_q the q-quantile of
Student's t with n − 1 degrees of freedom (``scipy.stats.t``):

    d̄ = mean_s d_s,   se = sd(d) / √n,   the 95% interval:  d̄ ± t_{1−α/2} · se   (α = 5%)

The one-sided t-test of H0: d ≤ c has p = P(T > (d̄ − c) / se), that of H0: d ≥ c p = P(T < (d̄ − c) / se): p < α/2
exactly when the 95% interval lies above c (below c).

Every claim has a kind and a smallest effect of interest δ (1 point: 0.01 on a 0–1 metric):

    kind    the paper says                  confirmed when the interval   refuted when (and not confirmed) it
    higher  the variant beats the baseline  lies above 0                  lies below +δ (no gain of δ or more)
    keeps   it loses less than δ (or gains) lies above −δ                 lies below −δ
    differ  the two differ                  excludes 0                    lies inside ±δ
    same    the change does not matter      lies inside ±δ                lies above +δ or below −δ

*unresolved* otherwise. Each side is a test, named by the hypothesis H0 it rejects; a one-sided test (or an
intersection of them, where both sides must hold) is decided at α/2, a two-sided one (either side will do) at α, its p
twice the smaller one-sided p:

    kind    confirm p                                      refute p
    higher  H0: d ≤ 0                           at α/2     H0: d ≥ δ                               at α/2
    keeps   H0: d ≤ −δ                          at α/2     H0: d ≥ −δ                              at α/2
    differ  2 · min(H0: d ≤ 0, H0: d ≥ 0)       at α       max(H0: d ≤ −δ, H0: d ≥ δ)              at α/2
    same    max(H0: d ≤ −δ, H0: d ≥ δ) (TOST)   at α/2     2 · min(H0: d ≤ δ, H0: d ≥ −δ)          at α

The claims of one finding (one study) with two or more paired seeds on one split are a family: Holm's
step-down correction (statsmodels' ``multipletests``, method="holm") adjusts its confirm p-values, and separately
its refute p-values, each brought to the one-sided scale first (a two-sided p halved, its adjusted p doubled back),
so that every test keeps its level. A claim is confirmed when its adjusted confirm p is below that test's level,
refuted when it is not confirmed and its adjusted refute p is below that test's level. With one claim this is the
95% interval's rule above.
"""
from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

DELTA = 0.01  # the smallest effect of interest: 1 point on a 0–1 metric
ALPHA = 0.05  # a two-sided test's level; a one-sided test's is α/2: the 95% interval's two sides
KINDS = ("higher", "keeps", "differ", "same")
TWO_SIDED = {("differ", "confirm"), ("same", "refute")}  # (kind, side) of the tests that either side will pass


class NotFinite(ValueError):
    """A paired difference that is NaN or infinite; ``seeds``: whose."""

    def __init__(self, message: str, seeds: list):
        super().__init__(message)
        self.seeds = seeds


@dataclass(frozen=True)
class Paired:
    """The paired differences over ``n`` common seeds: their mean d̄ and its standard error se = sd(d) / √n, in the
    metric's own units."""

    mean: float
    se: float
    n: int

    def __post_init__(self):
        if not (math.isfinite(self.mean) and math.isfinite(self.se) and self.se >= 0 and self.n >= 2):
            raise ValueError(f"Paired(mean={self.mean}, se={self.se}, n={self.n}): a finite mean, a finite se ≥ 0 and "
                             f"n ≥ 2 seeds are needed")

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
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
    """``baseline``, ``variant``: seed → metric. Only seeds both have are paired; at least two are needed, and every
    difference must be finite (:class:`NotFinite` names the seeds where it is not)."""
    seeds = sorted(set(baseline) & set(variant))
    if len(seeds) < 2:
        raise ValueError(f"a paired interval needs two or more common seeds, got {seeds} "
                         f"(baseline seeds {sorted(baseline)}, variant seeds {sorted(variant)})")
    d = np.array([variant[s] - baseline[s] for s in seeds], dtype=float)
    bad = [s for s, x in zip(seeds, d) if not math.isfinite(x)]
    if bad:
        shown = ", ".join(f"seed {s}: {variant[s]:g} − {baseline[s]:g}" for s in bad)
        raise NotFinite(f"the paired difference is not finite ({shown})", bad)
    return Paired(float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size)


def level(kind: str, side: str) -> float:
    """The level a claim's ``side`` (confirm, refute) test is decided at: α two-sided, α/2 one-sided."""
    return ALPHA if (kind, side) in TWO_SIDED else ALPHA / 2


def p_values(p: Paired, kind: str, delta: float = DELTA) -> tuple[float, float]:
    """(confirm p, refute p) of one claim, unadjusted: the module's second table."""
    if kind == "higher":
        return p.p_above(0.0), p.p_below(delta)
    if kind == "keeps":
        return p.p_above(-delta), p.p_below(-delta)
    if kind == "differ":
        return min(1.0, 2 * min(p.p_above(0.0), p.p_below(0.0))), max(p.p_above(-delta), p.p_below(delta))
    if kind == "same":
        return max(p.p_above(-delta), p.p_below(delta)), min(1.0, 2 * min(p.p_above(delta), p.p_below(-delta)))
    raise ValueError(f"kind={kind!r}: one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict within its family. ``p_confirm``, ``p_refute``: unadjusted; ``holm_confirm``,
    ``holm_refute``: Holm-adjusted; ``level_confirm``, ``level_refute``: what each is decided against.
    ``below_delta``: a confirmed ``higher`` whose gain is also shown to be less than δ (its refute test rejects
    too)."""

    verdict: str
    p_confirm: float
    p_refute: float
    holm_confirm: float
    holm_refute: float
    level_confirm: float
    level_refute: float
    below_delta: bool


def holm(p: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values of tests each decided at its own level (α/2 or α): adjusted on the one-sided scale
    (p · (α/2) / level), then brought back to each test's own."""
    scale = levels / (ALPHA / 2)
    with frozen_heap():
        adjusted = multipletests(p / scale, alpha=ALPHA / 2, method="holm")[1]
    return np.minimum(1.0, adjusted * scale)


@contextmanager
def frozen_heap():
    """Makes a full garbage collection inside it cheap: statsmodels' Holm branch calls ``gc.collect()``, up to a second
    over the heap of a process that holds torch and Lightning (most of what the test run spends in reports). The
    objects present on entry are left out of collection (``gc.freeze``) until the end, then returned to the oldest
    generation, where a later collection frees whatever of them is garbage. A heap frozen already is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def verdicts(family: list[tuple[Paired, str, float]]) -> list[Verdict]:
    """The verdicts of a family of claims, each given as (paired differences, kind, δ), in the family's order."""
    kinds = [kind for _, kind, _ in family]
    confirm, refute = (np.array(side) for side in zip(*(p_values(p, kind, delta) for p, kind, delta in family)))
    c_level, r_level = (np.array([level(kind, side) for kind in kinds]) for side in ("confirm", "refute"))
    holm_confirm, holm_refute = holm(confirm, c_level), holm(refute, r_level)
    out = []
    for i, kind in enumerate(kinds):
        confirmed, refuted = holm_confirm[i] < c_level[i], holm_refute[i] < r_level[i]
        out.append(Verdict("confirmed" if confirmed else "refuted" if refuted else "unresolved",
                           float(confirm[i]), float(refute[i]), float(holm_confirm[i]), float(holm_refute[i]),
                           float(c_level[i]), float(r_level[i]), bool(kind == "higher" and confirmed and refuted)))
    return out


def two_level_bootstrap(baseline: list[list[bool]], variant: list[list[bool]], reps: int = 10_000, seed: int = 0
                        ) -> tuple[float, float]:
    """95% percentile interval of the accuracy difference when both the training runs and the test set are redrawn.

    ``baseline[s][i]``, ``variant[s][i]``: whether seed s's model got example i right (the same seeds in the same
    order, the same examples). Every seed's models answer the one test set, so a replicate draws n seeds with
    replacement and then one resample of N examples with replacement, shared by every drawn seed and both arms, and
    takes

        mean over the drawn seeds s* of  mean over the drawn examples i* of (variant[s*][i*] − baseline[s*][i*]).

    An example enters only through its column of differences over the seeds (each −1, 0 or 1), and few columns are
    distinct, so drawing N examples comes down to drawing how many of each distinct column: a multinomial with their
    shares, the same distribution as drawing the indices, with reps × (distinct columns) counts instead of reps × N
    indices.

    Not ``scipy.stats.bootstrap``: it resamples one level (observations along one axis, paired across samples); the
    draw of examples after the draw of seeds has no place in it short of a statistic that draws its own random
    numbers, which neither its ``random_state`` nor its BCa interval would know of."""
    base, var = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    if base.shape != var.shape or base.ndim != 2 or base.size == 0:
        raise ValueError(f"two_level_bootstrap: shapes {base.shape} and {var.shape} must be equal (seeds × examples)")
    n, examples = base.shape
    columns, counts = np.unique(var - base, axis=1, return_counts=True)  # seed × distinct column, and how many
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n, size=(reps, n))  # the seeds first
    picked = rng.multinomial(examples, counts / examples, size=reps)  # reps × distinct column
    per_seed = picked @ columns.T / examples  # reps × seed: each seed's mean over the replicate's examples
    means = np.take_along_axis(per_seed, drawn, axis=1).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
