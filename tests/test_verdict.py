"""The reproduction report's paired interval and verdict rule, pinned on fixed numbers."""
import pytest

from dkd.studies.verdict import paired_bootstrap, paired_difference, verdict


def test_paired_interval_is_pinned():
    base = {42: 0.80, 1: 0.81, 2: 0.79, 3: 0.80, 4: 0.82}
    variant = {42: 0.82, 1: 0.82, 2: 0.80, 3: 0.83, 4: 0.83, 9: 0.99}  # seed 9 has no pair: left out
    p = paired_difference(base, variant)
    # d = 0.02, 0.01, 0.01, 0.03, 0.01: mean 0.016, sd 0.008944, t(4) = 2.776 -> half width 0.011104
    assert p.n == 5 and p.mean == pytest.approx(0.016)
    assert (p.low, p.high) == (pytest.approx(0.004896, abs=1e-6), pytest.approx(0.027104, abs=1e-6))


def test_verdict_follows_the_interval_not_the_mean():
    base = {s: 0.80 for s in range(5)}
    better = paired_difference(base, {0: 0.82, 1: 0.81, 2: 0.81, 3: 0.83, 4: 0.81})
    noisy = paired_difference(base, {0: 0.84, 1: 0.78, 2: 0.83, 3: 0.79, 4: 0.82})  # mean +0.012, wide
    worse = paired_difference(base, {0: 0.77, 1: 0.78, 2: 0.76, 3: 0.77, 4: 0.775})
    assert verdict(better) == "confirmed" and verdict(noisy) == "unresolved" and verdict(worse) == "refuted"
    assert verdict(worse, margin=-0.01) == "refuted"  # "keeps accuracy within a point" fails by more than a point
    assert verdict(paired_difference(base, {s: 0.797 for s in range(5)}), margin=-0.01) == "confirmed"


def test_too_few_pairs_is_an_error():
    with pytest.raises(ValueError, match="two or more common seeds"):
        paired_difference({1: 0.8}, {1: 0.9, 2: 0.9})


def test_differ_claim_needs_the_interval_off_zero_and_is_refuted_only_inside_the_margin():
    base = {s: 0.50 for s in range(5)}
    apart = paired_difference(base, {0: 0.48, 1: 0.47, 2: 0.48, 3: 0.49, 4: 0.47})
    same = paired_difference(base, {0: 0.501, 1: 0.499, 2: 0.502, 3: 0.498, 4: 0.500})
    wide = paired_difference(base, {0: 0.53, 1: 0.47, 2: 0.52, 3: 0.46, 4: 0.50})
    assert verdict(apart, 0.01, "differ") == "confirmed"  # lower, and a difference either way counts
    assert verdict(same, 0.01, "differ") == "refuted"
    assert verdict(wide, 0.01, "differ") == "unresolved"


def test_paired_bootstrap_is_pinned_and_pairs_examples():
    # two seeds, four examples; the variant fixes example 0 in both seeds and breaks example 3 in seed 1
    base = [[False, True, True, True], [False, True, True, True]]
    variant = [[True, True, True, True], [True, True, True, False]]
    low, high = paired_bootstrap(base, variant, reps=4000, seed=0)
    # per-example mean differences (1, 0, 0, -0.5): mean 0.125; means of four draws range over [-0.5, 1]
    assert (low, high) == (-0.375, 0.75)
    assert paired_bootstrap(base, base) == (0.0, 0.0)
    with pytest.raises(ValueError, match="must be equal"):
        paired_bootstrap(base, [[True]])


@pytest.mark.parametrize("low, high, expected", [(-0.004, 0.006, "confirmed"), (0.012, 0.03, "refuted"),
                                                 (-0.03, -0.015, "refuted"), (-0.02, 0.005, "unresolved")])
def test_a_same_claim_is_confirmed_inside_the_margin_and_refuted_beyond_it(low, high, expected):
    from dkd.studies.verdict import Paired, verdict

    assert verdict(Paired((low + high) / 2, low, high, 5), 0.01, "same") == expected
