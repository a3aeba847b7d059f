"""The reproduction report's verdict rule (design v2): the paired t interval with exact quantiles, each kind's three
verdicts, Holm's step-down correction within a family, and the two-level bootstrap, pinned on fixed numbers."""
import gc

import numpy as np
import pytest
from scipy import stats

from dkd.studies.verdict import (ALPHA, DELTA, KINDS, Paired, p_values, paired_difference, two_level_bootstrap,
                                 verdicts)


@pytest.fixture(autouse=True)
def no_gc_per_family(monkeypatch):
    """statsmodels' multipletests runs gc.collect() at every call: 0.2 s with the test session's objects, for
    nothing these tests check."""
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)


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


def test_too_few_pairs_and_unknown_kinds_are_errors():
    with pytest.raises(ValueError, match="two or more common seeds"):
        paired_difference({1: 0.8}, {1: 0.9, 2: 0.9})
    with pytest.raises(ValueError, match="kind='better': one of higher, keeps, differ, same"):
        p_values(Paired(0.0, 0.01, 5), "better")


# (mean, se) over 5 seeds: the 95% interval is mean ± 2.776 se
CASES = [
    ("higher", 0.020, 0.002, "confirmed"),   # [+1.44, +2.56] points
    ("higher", 0.005, 0.001, "confirmed"),   # [+0.22, +0.78]: better, by less than a point (below_delta)
    ("higher", 0.002, 0.002, "refuted"),     # [-0.36, +0.76]: no gain of a point or more
    ("higher", -0.010, 0.002, "refuted"),    # [-1.56, -0.44]
    ("higher", 0.005, 0.004, "unresolved"),  # [-0.61, +1.61]
    ("keeps", -0.003, 0.002, "confirmed"),   # [-0.86, +0.26]: above -1
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
            assert v.confirm_step == v.refute_step == (0.95, low, high)  # one claim: its one step is at 95%
            seen.add((kind, v.verdict))
    assert len(seen) == 12  # every kind met all three verdicts
    for d in (-0.02, 0.0, 0.005, 0.02):  # every seed gave the same difference: the interval is that point
        for kind in KINDS:
            assert one(Paired(d, 0.0, 5), kind).verdict == by_interval(kind, d, d)


def _paired_with_p(p_confirm: float, se: float = 0.01, n: int = 5) -> Paired:
    """A 'higher' claim whose confirm p (H0: d ≤ 0) is ``p_confirm``."""
    return Paired(se * float(stats.t.isf(p_confirm, n - 1)), se, n)


def test_holm_steps_down_where_the_unadjusted_rule_would_confirm():
    family = [(_paired_with_p(p), "higher", DELTA) for p in (0.02, 0.004, 0.3)]
    alone = [one(p, "higher").verdict for p, _, _ in family]
    together = verdicts(family)
    assert alone == ["confirmed", "confirmed", "unresolved"]
    assert [v.verdict for v in together] == ["unresolved", "confirmed", "unresolved"]
    # Holm: sorted p 0.004, 0.02, 0.3 times 3, 2, 1, made monotone: 0.012, 0.04, 0.3
    assert [v.holm_confirm for v in together] == [pytest.approx(0.04), pytest.approx(0.012), pytest.approx(0.3)]
    assert [v.confirm_step[0] for v in together] == [pytest.approx(1 - 0.05 / 2), pytest.approx(1 - 0.05 / 3), 0.95]
    first = together[0]
    assert family[0][0].interval()[0] > 0 and first.confirm_step[1] < 0  # above 0 at 95%, not at its step's 97.5%


def test_a_holm_step_interval_clears_its_side_exactly_when_the_step_rejects():
    rng = np.random.default_rng(1)
    for _ in range(200):
        m = int(rng.integers(2, 7))
        family = [(Paired(float(rng.normal(0, 0.02)), float(rng.uniform(0.001, 0.008)), 5), str(rng.choice(KINDS)),
                   DELTA) for _ in range(m)]
        out = verdicts(family)
        for side, index in (("confirm", 0), ("refute", 1)):
            p = np.array([getattr(v, f"p_{side}") for v in out])
            for i, ((_, kind, delta), v) in enumerate(zip(family, out)):
                _, low, high = getattr(v, f"{side}_step")
                cleared = clears(kind, low, high, delta)[index]
                rejected = getattr(v, f"holm_{side}") < ALPHA
                earlier = [getattr(out[j], f"holm_{side}") < ALPHA for j in range(m) if p[j] < p[i]]
                if rejected:
                    assert cleared, (family, side, i)
                if cleared and all(earlier):
                    assert rejected, (family, side, i)
            assert all((v.verdict == "confirmed") == (v.holm_confirm < ALPHA) for v in out)
            assert all((v.verdict == "refuted") == (v.holm_confirm >= ALPHA and v.holm_refute < ALPHA) for v in out)


def test_the_two_level_bootstrap_is_pinned():
    base = [[False, True, True, True], [False, True, True, True]]  # the variant fixes example 0 in both seeds and
    variant = [[True, True, True, True], [True, True, True, False]]  # breaks example 3 in seed 1
    assert two_level_bootstrap(base, variant) == (-0.375, 0.5)
    assert two_level_bootstrap(base, base) == (0.0, 0.0)  # both arms see the same examples of a seed
    with pytest.raises(ValueError, match="must be equal"):
        two_level_bootstrap(base, [[True]])


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
