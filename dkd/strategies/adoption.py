"""Teacher adoption (config group ``adoption``): which teacher(s) each distilled instance learns from, and how much.

An adoption turns the student's logits on the KD rows into :class:`Route`s. The teachers arrive ordered from the
smallest to the largest (parameter count, computed by the system). u_i is the student's uncertainty of row i
(:func:`dkd.strategies.uncertainty.uncertainty`, normalised entropy by default): u → 1 means unsure, and an unsure
student learns from a *smaller* teacher (the paper's finding: a big teacher's knowledge is hard to take in while
unsure).

With ℓ_i(t) the per-instance KD loss against teacher t and n KD rows, the KD term is
``(1/n) Σ_routes Σ_{i ∈ route} w_i · ℓ_i(t)`` (:func:`dkd.strategies.weighting.instance_mean`, the one place that
reduces): a route gives the weight of each of its rows, never a share of the batch, so a route over some rows weighs
them as a route over all rows would. Per rule:

- ``single``:         L = mean_i ℓ_i(t)
- ``ensemble``:       ``combine=probs``: L = mean_i ℓ_i(fused), the target being the teachers' averaged probabilities
  (averaged logits for MSE); ``combine=losses``: L = (1/N) Σ_t mean_i ℓ_i(t); ``combine=weights``: L = Σ_t α_t
  mean_i ℓ_i(t) (the authors' ``small_teacher_alpha``/``large_teacher_alpha``)
- ``hard``:           rows sorted by u, cut into N bins (most uncertain → smallest teacher; ``split`` = the smaller
  teacher's share for N = 2, default 0.5); ``reduction=batch_mean``: L = (1/n) Σ_i ℓ_i(t(i)), ``sum_of_means`` (the
  authors' code): L = Σ_t mean_{i ∈ bin t} ℓ_i(t). Each teacher runs only on its own rows.
- ``soft``:           ū = mean_i u_i; L = Σ_t w_t(ū) mean_i ℓ_i(t)
- ``soft_instance``:  L = Σ_t mean_i w_t(u_i) ℓ_i(t)

For N = 2, w_small(u) = u and w_large(u) = 1 − u. For N teachers the weights interpolate piecewise-linearly between
neighbours in size order: x = (1 − u)(N − 1), w_k(u) = max(0, 1 − |x − k|); a teacher whose weight is 0 on a row is
not run on it. Weights and splits carry no gradient unless ``detach=false`` (the authors' code, where the gradient of
the KD loss flows into u through the weights).

``faithful=true`` is the authors' code (``UncertaintyTeacherKDForSequenceClassification``): weights not detached,
``hard`` as the sum of the two halves' means, ``ensemble`` as fixed weights of 1.0 per teacher unless given.
``adoption=smallest|largest`` takes one teacher of the pool (the single-teacher baselines of a pool sweep).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import torch

from dkd.errors import UserError
from dkd.strategies.uncertainty import MEASURES, uncertainty


@dataclass
class Route:
    """Teachers ``teachers`` see KD rows ``index`` (positions in the trained rows); several teachers' outputs are fused
    into one target by the objective. ``weight``: the weight of each of those rows' losses (one number for all, or
    one per row), which :func:`dkd.strategies.weighting.instance_mean` sums and divides by the number of KD rows."""

    teachers: tuple[str, ...]
    index: torch.Tensor
    weight: torch.Tensor | float = 1.0


class SingleTeacher:
    """``adoption=single``: the one teacher sees every KD row with weight 1 (static KD). ``pick=smallest|largest``
    (``adoption=smallest``, ``adoption=largest``) takes that one of a pool instead, so that a sweep over adoptions
    with ``teacher=both`` includes both single-teacher baselines."""

    PICKS = ("smallest", "largest")

    def __init__(self, pick: str | None = None, faithful: bool = False):
        if pick is not None and pick not in self.PICKS:
            raise UserError(f"adoption.pick={pick!r}: choose one of {list(self.PICKS)}, or null for the one teacher.")
        self.pick = pick
        self.stats: dict = {}

    def check(self, teachers: list[str], num_labels: int = 2) -> None:
        if self.pick is None and len(teachers) != 1:
            raise UserError(f"adoption=single takes one teacher but teacher= gives {teachers}; use teacher=base or "
                            f"teacher=large, adoption=smallest or adoption=largest to take one of the pool, or a "
                            f"multi-teacher adoption (ensemble, hard, soft, soft_instance).")

    def __call__(self, student_logits: torch.Tensor, rows: torch.Tensor, teachers: list[str]) -> list[Route]:
        return [Route((teachers[-1] if self.pick == "largest" else teachers[0],), rows)]


class PoolAdoption:
    """A pool of two or more teachers; subclasses give :meth:`route`. ``stats`` holds what the last batch decided:
    share of the KD rows each teacher saw, each teacher's mean weight per row, and the mean u (left out where there is
    none: a regression's ensemble, or a batch without KD rows)."""

    name = "pool"
    uses_uncertainty = True
    batch_weights = False  # one weight per teacher from the whole batch (soft): under DDP its gradient stays per rank

    def __init__(self, measure: str = "entropy", detach: bool = True, faithful: bool = False):
        if measure not in MEASURES:
            raise UserError(f"adoption.measure={measure!r}: choose one of {sorted(MEASURES)}.")
        self.measure, self.detach, self.faithful = measure, detach and not faithful, faithful
        self.stats: dict = {}

    def check(self, teachers: list[str], num_labels: int = 2) -> None:
        if len(teachers) < 2:
            raise UserError(f"adoption={self.name} chooses among two or more teachers but teacher= gives {teachers}; "
                            f"use teacher=both (or adoption=single).")
        if self.uses_uncertainty and num_labels < 2:
            raise UserError(f"adoption={self.name} follows the student's uncertainty over classes, but this task is a "
                            f"regression: use adoption=ensemble (or one teacher).")

    def __call__(self, student_logits: torch.Tensor, rows: torch.Tensor, teachers: list[str]) -> list[Route]:
        if rows.numel() == 0:  # a step without KD rows (sampler.min_keep=0) decides nothing
            self.stats = {}
            return []
        # no u on a regression (only the ensemble runs there, and it ignores u): none in the stats
        measurable = student_logits.size(-1) > 1
        u = uncertainty(student_logits[rows], self.measure, grad=not self.detach) if measurable else rows.float()
        routes = self.route(u, rows, teachers)
        n = rows.numel()
        share, weight = dict.fromkeys(teachers, 0.0), dict.fromkeys(teachers, 0.0)
        for r in routes:
            w = r.weight.detach() if torch.is_tensor(r.weight) else r.weight
            for t in r.teachers:
                share[t] += r.index.numel() / n
                # the teacher's mean weight over all KD rows (0 on rows it does not see)
                weight[t] += (w.sum() if torch.is_tensor(w) and w.dim() else w * r.index.numel()) / n
        self.stats = {**({"u": u.detach().mean()} if measurable else {}),
                      **{f"share_{t}": v for t, v in share.items()}, **{f"weight_{t}": v for t, v in weight.items()}}
        return routes

    def route(self, u: torch.Tensor, rows: torch.Tensor, teachers: list[str]) -> list[Route]:
        raise NotImplementedError


def interpolation_weights(u: torch.Tensor, count: int) -> torch.Tensor:
    """w_k(u) = max(0, 1 − |(1 − u)(N − 1) − k|) for teachers k = 0 (smallest) … N − 1; shape ``(*u.shape, N)``."""
    x = (1 - u).unsqueeze(-1) * (count - 1)
    k = torch.arange(count, device=u.device, dtype=u.dtype)
    return (1 - (x - k).abs()).clamp(min=0)


class Ensemble(PoolAdoption):
    """``adoption=ensemble``: every teacher on every row, static (module docstring for ``combine``).

    ``combine=null`` (the config's default): ``probs``, or under ``faithful=true`` the authors' ensemble, ``weights``
    with α = 1.0 per teacher unless ``weights`` gives them. ``faithful=true`` with another ``combine`` is refused."""

    name = "ensemble"
    uses_uncertainty = False
    COMBINE = ("probs", "losses", "weights")

    def __init__(self, combine: str | None = None, weights: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if combine is not None and combine not in self.COMBINE:
            raise UserError(f"adoption.combine={combine!r}: choose one of {list(self.COMBINE)}, or null.")
        if self.faithful and combine not in (None, "weights"):
            raise UserError(f"adoption.faithful=true is the authors' ensemble, combine=weights (α = 1.0 per teacher "
                            f"unless adoption.weights gives them), but adoption.combine={combine} asks for another. "
                            f"Set adoption.faithful=false to keep combine={combine}, or drop adoption.combine to run "
                            f"the authors' weights.")
        self.combine = combine or ("weights" if self.faithful else "probs")
        self.weights = dict(weights or {})

    def check(self, teachers: list[str], num_labels: int = 2) -> None:
        super().check(teachers, num_labels)
        if self.faithful and not self.weights:
            self.weights = dict.fromkeys(teachers, 1.0)  # the authors' small/large_teacher_alpha = 1.0
        if self.combine == "weights" and sorted(self.weights) != sorted(teachers):
            raise UserError(f"adoption.combine=weights needs one adoption.weights.<teacher> per teacher {teachers}, "
                            f"got {sorted(self.weights)}; e.g. adoption.weights={{base: 1.0, large: 1.0}}.")

    def route(self, u, rows, teachers):
        if self.combine == "probs":
            return [Route(tuple(teachers), rows)]
        weight = {t: (self.weights[t] if self.combine == "weights" else 1 / len(teachers)) for t in teachers}
        return [Route((t,), rows, weight[t]) for t in teachers]


class HardSplit(PoolAdoption):
    """``adoption=hard``: rows sorted by u (most uncertain first) are cut into one bin per teacher, smallest teacher
    first. ``split``: None for equal bins (0.5 with two teachers, the authors'), a float for the smaller teacher's
    share of two, or a list of N shares."""

    name = "hard"
    REDUCTIONS = ("batch_mean", "sum_of_means")

    def __init__(self, split: float | list[float] | None = None, reduction: str = "batch_mean", **kwargs):
        super().__init__(**kwargs)
        if reduction not in self.REDUCTIONS:
            raise UserError(f"adoption.reduction={reduction!r}: choose one of {list(self.REDUCTIONS)}.")
        self.split, self.reduction = split, "sum_of_means" if self.faithful else reduction

    def shares(self, count: int) -> list[float]:
        if self.split is None:
            return [1 / count] * count
        shares = [float(self.split), 1 - float(self.split)] if isinstance(self.split, (int, float)) else \
            [float(s) for s in self.split]
        if len(shares) != count or any(s < 0 for s in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
            raise UserError(f"adoption.split={self.split}: give the smaller teacher's share in (0, 1) for two "
                            f"teachers, or {count} non-negative shares summing to 1 (smallest teacher first).")
        return shares

    def check(self, teachers: list[str], num_labels: int = 2) -> None:
        super().check(teachers, num_labels)
        self.shares(len(teachers))

    def route(self, u, rows, teachers):
        order = u.detach().sort(descending=True, stable=True).indices
        n = rows.numel()
        cuts = [0, *(math.floor(n * c + 1e-9) for c in accumulate(self.shares(len(teachers))[:-1])), n]
        routes = []
        for k, t in enumerate(teachers):
            positions = order[cuts[k]:cuts[k + 1]].sort().values
            # sum_of_means: each bin's mean, i.e. its rows weighed n / |bin| in the mean over the n rows
            weight = 1.0 if self.reduction == "batch_mean" else n / max(positions.numel(), 1)
            routes.append(Route((t,), rows[positions], weight))
        return routes


class SoftBatch(PoolAdoption):
    """``adoption=soft``: one weight per teacher for the batch, from the mean uncertainty ū."""

    name = "soft"
    batch_weights = True

    def route(self, u, rows, teachers):
        w = interpolation_weights(u.mean(), len(teachers))
        return [Route((t,), rows, w[k]) for k, t in enumerate(teachers) if not self.detach or w[k] > 0]


class SoftInstance(PoolAdoption):
    """``adoption=soft_instance``: per-row weights from each row's u; a teacher runs only on rows it weighs."""

    name = "soft_instance"

    def route(self, u, rows, teachers):
        w = interpolation_weights(u, len(teachers))  # (n, N)
        routes = []
        for k, t in enumerate(teachers):
            used = (w[:, k] > 0).nonzero().flatten() if self.detach else torch.arange(rows.numel(), device=rows.device)
            if used.numel():
                routes.append(Route((t,), rows[used], w[used, k]))
        return routes
