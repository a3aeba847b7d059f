"""The reproduction report's verdict rule (design v2): the paired t interval with exact quantiles, each kind's three
verdicts, Holm's step-down correction within a family, and the two-level bootstrap, pinned on numbers computed apart
from the code under test (scipy's t-tests, Holm by hand, the bootstrap's exact distribution)."""
import gc
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from dkd.studies.verdict import (
    ALPHA,
    DELTA,
    KINDS,
    NotFinite,
    Paired,
    p_values,
    paired_difference,
    two_level_bootstrap,
    verdicts,
)


def by_interval(kind: str, low: float, high: float, delta: float = DELTA) -> str:
    """The rule as the design states it, on the plain interval: what one claim alone must get."""
    confirm, refute = clears(kind, low, high, delta)
    return "confirmed" if confirm else "refuted" if refute else "unresolved"


def clears(kind: str, low: float, high: float, delta: float = DELTA) -> tuple[bool, bool]:
    """Whether an interval clears the claim's confirm side and its refute side."""
    return {"higher": (low > 0, high < delta),
            "keeps": (low > -delta, high < -delta),
            "differ": (low > 0 or high < 0, -delta < low and high < delta),
            "same": (-delta < low and high < delta, low > delta or high < -delta)}[kind]


def one(p: Paired, kind: str, delta: float = DELTA):
    return verdicts([(p, kind, delta)])[0]


def test_the_paired_interval_uses_the_exact_t_quantile():
    base = {42: 0.80, 1: 0.81, 2: 0.79, 3: 0.80, 4: 0.82}
    variant = {42: 0.82, 1: 0.82, 2: 0.80, 3: 0.83, 4: 0.83, 9: 0.99}  # seed 9 has no pair: left out
    p = paired_difference(base, variant)
    # d = 0.02, 0.01, 0.01, 0.03, 0.01: mean 0.016, sd 0.008944, se 0.004; t(0.975, 4) = 2.7764451 (the old table's
    # 2.776 gave 0.004896, 0.027104)
    assert p.n == 5 and p.mean == pytest.approx(0.016) and p.se == pytest.approx(0.004)
    low, high = p.interval()
    assert (low, high) == (pytest.approx(0.0048942, abs=1e-7), pytest.approx(0.0271058, abs=1e-7))
    assert (high - low) / 2 / p.se == pytest.approx(2.7764451, abs=1e-7)
    assert p.interval(0.99) == (pytest.approx(0.016 - 4.6040949 * 0.004), pytest.approx(0.016 + 4.6040949 * 0.004))


def test_one_sided_p_values_are_scipys_paired_t_tests():
    base = np.array([0.80, 0.81, 0.79, 0.80, 0.82])
    variant = np.array([0.82, 0.82, 0.80, 0.83, 0.83])
    p = paired_difference(dict(enumerate(base)), dict(enumerate(variant)))
    assert p.p_above(0) == pytest.approx(stats.ttest_rel(variant, base, alternative="greater").pvalue)
    assert p.p_below(0.01) == pytest.approx(stats.ttest_1samp(variant - base, 0.01, alternative="less").pvalue)
    assert p.p_above(0) == pytest.approx(0.0080650, abs=1e-7)


def test_two_sided_and_equivalence_p_values_are_scipys():
    base = np.array([0.80, 0.81, 0.79, 0.80, 0.82])
    variant = np.array([0.805, 0.80, 0.80, 0.81, 0.825])
    d = variant - base
    p = paired_difference(dict(enumerate(base)), dict(enumerate(variant)))
    one_sided = lambda c, side: stats.ttest_1samp(d, c, alternative=side).pvalue  # noqa: E731
    assert p_values(p, "differ")[0] == pytest.approx(stats.ttest_rel(variant, base).pvalue)  # two-sided
    assert p_values(p, "differ")[1] == pytest.approx(max(one_sided(-DELTA, "greater"), one_sided(DELTA, "less")))
    assert p_values(p, "same")[0] == pytest.approx(max(one_sided(-DELTA, "greater"), one_sided(DELTA, "less")))
    assert p_values(p, "same")[1] == pytest.approx(min(1, 2 * min(one_sided(DELTA, "greater"),
                                                                  one_sided(-DELTA, "less"))))
    assert p_values(p, "differ")[0] == pytest.approx(0.3375019, abs=1e-6)  # d̄ 0.004, se 0.003674: t = 1.0887


def test_too_few_pairs_and_unknown_kinds_are_errors():
    with pytest.raises(ValueError, match="two or more common seeds"):
        paired_difference({1: 0.8}, {1: 0.9, 2: 0.9})
    with pytest.raises(ValueError, match="kind='better': one of higher, keeps, differ, same"):
        p_values(Paired(0.0, 0.01, 5), "better")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_metric_that_is_not_finite_is_an_error_not_a_verdict(bad):
    """statsmodels' multipletests counts a NaN p as rejected: a NaN metric would come out confirmed."""
    base = {42: 0.80, 1: 0.81, 2: 0.79}
    with pytest.raises(NotFinite, match=r"not finite \(seed 1: (nan|inf) − 0.81\)") as err:
        paired_difference(base, {42: 0.82, 1: bad, 2: 0.80})
    assert err.value.seeds == [1]
    with pytest.raises(ValueError, match="a finite mean"):
        verdicts([(Paired(math.nan, 0.01, 5), "higher", DELTA)])


# (mean, se) over 5 seeds: the 95% interval is mean ± 2.776 se
CASES = [
    ("higher", 0.020, 0.002, "confirmed"),   # [+1.44, +2.56] points
    ("higher", 0.005, 0.001, "confirmed"),   # [+0.22, +0.78]: better, by less than a point (below_delta)
    ("higher", 0.002, 0.002, "refuted"),     # [-0.36, +0.76]: no gain of a point or more
    ("higher", -0.010, 0.002, "refuted"),    # [-1.56, -0.44]
    ("higher", 0.005, 0.004, "unresolved"),  # [-0.61, +1.61]
    ("keeps", -0.003, 0.002, "confirmed"),   # [-0.86, +0.26]: above -1
    ("keeps", 0.030, 0.002, "confirmed"),    # [+2.44, +3.56]: wholly above +1 is within 1 point too (non-inferior)
    ("keeps", -0.030, 0.002, "refuted"),     # [-3.56, -2.44]: below -1
    ("keeps", -0.010, 0.002, "unresolved"),  # [-1.56, -0.44]
    ("differ", -0.020, 0.002, "confirmed"),  # [-2.56, -1.44]: a difference either way counts
    ("differ", 0.020, 0.002, "confirmed"),
    ("differ", 0.001, 0.001, "refuted"),     # [-0.18, +0.38]: inside ±1
    ("differ", 0.005, 0.004, "unresolved"),  # [-0.61, +1.61]
    ("same", 0.001, 0.001, "confirmed"),     # inside ±1
    ("same", 0.030, 0.002, "refuted"),       # wholly above +1
    ("same", -0.030, 0.002, "refuted"),      # wholly below -1
    ("same", 0.008, 0.002, "unresolved"),    # [+0.24, +1.36]
]


@pytest.mark.parametrize("kind, mean, se, expected", CASES)
def test_each_kind_has_its_three_verdicts(kind, mean, se, expected):
    p = Paired(mean, se, 5)
    v = one(p, kind)
    assert v.verdict == expected == by_interval(kind, *p.interval())
    assert v.below_delta == (kind == "higher" and mean == 0.005 and se == 0.001)


def test_one_claim_alone_gets_the_plain_95_interval_verdict():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        p = Paired(float(rng.normal(0, 0.02)), float(rng.uniform(0, 0.01)), int(rng.integers(2, 12)))
        for kind in KINDS:
            v = one(p, kind)
            low, high = p.interval()
            assert v.verdict == by_interval(kind, low, high), (p, kind)
            assert v.below_delta == (kind == "higher" and low > 0 and high < DELTA)
            assert (v.holm_confirm, v.holm_refute) == (pytest.approx(v.p_confirm), pytest.approx(v.p_refute))
            assert (v.level_confirm, v.level_refute) == {"differ": (ALPHA, ALPHA / 2), "same": (ALPHA / 2, ALPHA)}.get(
                kind, (ALPHA / 2, ALPHA / 2))
            if kind == "differ" and p.se > 0:  # the two-sided t-test's p, from scipy's t
                assert v.p_confirm == pytest.approx(2 * stats.t.sf(abs(p.mean) / p.se, p.n - 1))
            seen.add((kind, v.verdict))
    assert len(seen) == 12  # every kind met all three verdicts
    for d in (-0.02, 0.0, 0.005, 0.02):  # every seed gave the same difference: the interval is that point
        for kind in KINDS:
            assert one(Paired(d, 0.0, 5), kind).verdict == by_interval(kind, d, d)


def _paired_with_p(p_confirm: float, se: float = 0.01, n: int = 5) -> Paired:
    """A 'higher' claim whose confirm p (H0: d ≤ 0) is ``p_confirm``; a 'differ' claim whose two-sided p is twice
    that."""
    return Paired(se * float(stats.t.isf(p_confirm, n - 1)), se, n)


def test_holm_steps_down_where_the_unadjusted_rule_would_confirm():
    family = [(_paired_with_p(p), "higher", DELTA) for p in (0.02, 0.004, 0.3)]
    alone = [one(p, "higher").verdict for p, _, _ in family]
    together = verdicts(family)
    assert alone == ["confirmed", "confirmed", "unresolved"]
    assert [v.verdict for v in together] == ["unresolved", "confirmed", "unresolved"]
    # Holm: sorted p 0.004, 0.02, 0.3 times 3, 2, 1, made monotone: 0.012, 0.04, 0.3
    assert [v.holm_confirm for v in together] == [pytest.approx(0.04), pytest.approx(0.012), pytest.approx(0.3)]
    assert [v.p_confirm for v in together] == [pytest.approx(0.02), pytest.approx(0.004), pytest.approx(0.3)]


@pytest.mark.parametrize("p, adjusted, verdict", [(0.008, 0.024, "confirmed"), (0.01, 0.03, "unresolved")])
def test_tied_p_values_share_one_adjusted_p(p, adjusted, verdict):
    """Three equal p-values: each is the first step's (3p), whatever order the ties are taken in."""
    out = verdicts([(_paired_with_p(p), "higher", DELTA)] * 3)
    assert [v.holm_confirm for v in out] == [pytest.approx(adjusted)] * 3
    assert [v.verdict for v in out] == [verdict] * 3


def test_a_two_sided_test_keeps_its_level_in_a_family():
    """differ's two-sided p enters Holm halved (the one-sided scale of the others) and comes back doubled."""
    # one-sided 0.004 and two-sided 0.03 (0.015 halved): 0.004 · 2 = 0.008, then 0.015 · 1; differ's back: 0.03
    out = verdicts([(_paired_with_p(0.004), "higher", DELTA), (_paired_with_p(0.015), "differ", DELTA)])
    assert out[1].p_confirm == pytest.approx(0.03) and out[1].holm_confirm == pytest.approx(0.03)
    assert out[0].holm_confirm == pytest.approx(0.008) and [v.verdict for v in out] == ["confirmed", "confirmed"]
    # a tie on the one-sided scale: higher 0.02 and differ 0.04 (0.02 halved) both become 2 · 0.02, differ's doubled
    out = verdicts([(_paired_with_p(0.02), "higher", DELTA), (_paired_with_p(0.02), "differ", DELTA)])
    assert [v.holm_confirm for v in out] == [pytest.approx(0.04), pytest.approx(0.08)]
    assert [v.verdict for v in out] == ["unresolved", "unresolved"]


def holm_by_hand(p: list[float], levels: list[float]) -> list[bool]:
    """Holm's step-down procedure written out: on the one-sided scale (p · (α/2) / level), the i-th smallest (from 0)
    of m is rejected when it and every smaller one is below (α/2) / (m − i)."""
    scaled = [x * (ALPHA / 2) / lv for x, lv in zip(p, levels)]
    order = sorted(range(len(p)), key=scaled.__getitem__)
    rejected = [False] * len(p)
    for i, j in enumerate(order):
        if scaled[j] >= (ALPHA / 2) / (len(p) - i):
            break
        rejected[j] = True
    return rejected


def test_verdicts_in_a_family_are_holms_step_down_by_hand():
    rng = np.random.default_rng(1)
    changed = 0
    for _ in range(300):
        m = int(rng.integers(2, 7))
        family = [(Paired(float(rng.normal(0, 0.02)), float(rng.uniform(0.001, 0.008)), 5), str(rng.choice(KINDS)),
                   DELTA) for _ in range(m)]
        out = verdicts(family)
        confirm = holm_by_hand([v.p_confirm for v in out], [v.level_confirm for v in out])
        refute = holm_by_hand([v.p_refute for v in out], [v.level_refute for v in out])
        expected = ["confirmed" if c else "refuted" if r else "unresolved" for c, r in zip(confirm, refute)]
        assert [v.verdict for v in out] == expected, family
        changed += sum(v.verdict != one(p, kind).verdict for v, (p, kind, _) in zip(out, family))
    assert changed > 20  # the families were large enough for Holm to matter


def exact_interval(baseline: list[list[int]], variant: list[list[int]]) -> tuple[float, float]:
    """The two-level bootstrap's 2.5% and 97.5% quantiles over every draw of seeds and then of examples, each draw
    equally likely (tiny cases only)."""
    d = np.array(variant, dtype=float) - np.array(baseline, dtype=float)
    n, examples = d.shape
    means = sorted(d[np.ix_(seeds, rows)].mean() for seeds in itertools.product(range(n), repeat=n)
                   for rows in itertools.product(range(examples), repeat=examples))
    share = np.arange(1, len(means) + 1) / len(means)
    return means[int(np.argmax(share > 0.025))], means[int(np.argmax(share > 0.975))]


def test_holm_collects_over_a_frozen_heap_and_thaws_it_after(monkeypatch):
    """statsmodels' Holm calls gc.collect(); the report freezes the heap around it (cheap) and thaws it after, unless
    a caller had frozen it."""
    frozen_at_collect = []
    collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: frozen_at_collect.append(gc.get_freeze_count() > 0) or collect(*a))
    family = [(paired_difference({1: 0.5, 2: 0.6, 3: 0.7}, {1: 0.52, 2: 0.61, 3: 0.73}), "higher", DELTA)] * 2
    assert gc.get_freeze_count() == 0
    verdicts(family)
    assert frozen_at_collect and all(frozen_at_collect)  # every collection inside ran over a frozen heap
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        verdicts(family)
        assert gc.get_freeze_count() > 0  # still frozen: not thawed by the report
    finally:
        gc.unfreeze()


def test_the_two_level_bootstrap_is_pinned():
    base = [[False, True, True, True], [False, True, True, True]]  # the variant fixes example 0 in both seeds and
    variant = [[True, True, True, True], [True, True, True, False]]  # breaks example 3 in seed 1
    # exact: P(mean ≤ -0.75) = 0.009, P(mean ≤ -0.5) = 0.038; P(mean ≤ 0.625) = 0.961, P(mean ≤ 0.75) = 0.996
    assert two_level_bootstrap(base, variant) == exact_interval(base, variant) == (-0.5, 0.75)
    assert two_level_bootstrap(base, base) == (0.0, 0.0)  # both arms see the same examples of a seed
    with pytest.raises(ValueError, match="must be equal"):
        two_level_bootstrap(base, [[True]])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_identical_seeds_add_no_information(k):
    """The seeds answer one test set, so k seeds whose models answer alike are one seed: the examples are drawn once
    per replicate for every drawn seed. Drawn apart per seed, the k copies would average out test-set noise that the
    one test set does not have (the interval of four copies: [+2.4, +7.6] points against one seed's [-0.5, +10.5])."""
    base = [0] * 20 + [1] * 30 + [1] * 150
    variant = [1] * 20 + [0] * 10 + [1] * 170  # +1 on 20 examples, -1 on 10, 0 on 170
    single = two_level_bootstrap([base], [variant], reps=20_000, seed=3)
    copies = two_level_bootstrap([base] * k, [variant] * k, reps=20_000, seed=3)
    assert copies == (pytest.approx(single[0], abs=0.01), pytest.approx(single[1], abs=0.01))
    assert single == (pytest.approx(-0.005, abs=0.006), pytest.approx(0.105, abs=0.006))  # normal: 0.05 ± 1.96 · 0.0272


def test_with_one_seed_it_is_the_bootstrap_over_examples():
    # differences (+1, 0, 0, 0, -1): the mean of 5 draws has its 2.5% and 97.5% quantiles at -0.6 and +0.6 (counted
    # over all 5^5 draws: P(mean ≤ -0.8) = 0.005, P(mean ≤ -0.6) = 0.036)
    assert two_level_bootstrap([[0, 1, 1, 1, 1]], [[1, 1, 1, 1, 0]]) == (-0.6, 0.6)


def test_with_one_example_per_seed_it_is_the_bootstrap_over_seeds():
    base, variant = [[0], [1], [0], [1], [0]], [[1], [1], [1], [0], [0]]
    d = np.array([1, 0, 1, -1, 0])
    drawn = np.random.default_rng(7).integers(0, 5, size=(3000, 5))  # the seeds' draw comes first
    expected = np.percentile(d[drawn].mean(axis=1), [2.5, 97.5])
    assert two_level_bootstrap(base, variant, reps=3000, seed=7) == tuple(expected)


def test_seeds_that_disagree_widen_the_interval():
    # seed 0: the variant gets every example right and the baseline none; seed 1: the same models' answers. With the
    # seeds held fixed the mean is 0.5 in every replicate; redrawing seeds gives 0, 0.5 or 1.
    base, variant = [[0, 0, 0], [1, 1, 0]], [[1, 1, 1], [1, 1, 0]]
    assert two_level_bootstrap(base, variant) == (0.0, 1.0)
