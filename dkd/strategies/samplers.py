"""Data selection (config group ``sampler``): which rows of a batch get the teachers' knowledge, and which rows the
student trains on (``sampler.mode``).

Every sampler keeps k = max(m, ⌊r·B⌋) of a batch's B rows (r = ``sampler.ratio``, m = ``sampler.min_keep``, default 1),
the first k of its ranking. The authors' code keeps ⌊r·B⌋ (m = 0): a batch with r·B < 1 (B = 7 at r = 0.1, a last
partial batch) gets no KD row, and its step is CE alone (their loss is then NaN in the log, its gradient CE's).

- ``faithful`` (the authors' code, its cost): the student runs forward, backward and CE on all B rows; the teachers
  and the KD loss see the k selected rows, ranked from the logits of that training forward.
- ``efficient`` (the paper's accounting, default): a no-grad scoring pass of the student over the B rows (skipped
  when the ranking needs no scores, as for ``random``), then the teachers and the student's forward and backward
  (CE + KD) on the k selected rows only. The scoring pass runs with dropout off (the student's own prediction)
  unless ``sampler.score_dropout=true``.

``sampler.pool=p`` (beyond the paper): the loader delivers p·B rows a step, the scoring pass covers all of them and the
top r of the pool trains as one step, so that a step stays full (r·p·B rows) at small r. An epoch is still one pass
over the data, in p times fewer optimizer steps (the learning-rate schedule counts those steps).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from dkd.errors import UserError
from dkd.strategies.uncertainty import MEASURES, uncertainty

MODES = ("faithful", "efficient")


def keep_count(size: int, ratio: float, minimum: int = 1) -> int:
    """k = max(m, ⌊r·B⌋), at most B: by default at least one row, so that a small batch or ratio still distils."""
    return min(size, max(minimum, math.floor(ratio * size + 1e-9)))


class Sampler:
    """Keeps the first k rows of :meth:`order`; ``mode`` says which rows the student trains on (module docstring).
    After each batch, ``stats`` holds what it decided (share of rows selected, mean uncertainty of those and of all)."""

    needs_scores = False

    def __init__(self, ratio: float = 1.0, mode: str = "efficient", score_dropout: bool = False, pool: int = 1,
                 min_keep: int = 1):
        if not 0 < ratio <= 1:
            raise UserError(f"sampler.ratio={ratio}: must lie in (0, 1].")
        if mode not in MODES:
            raise UserError(f"sampler.mode={mode!r}: choose one of {list(MODES)}.")
        if not isinstance(pool, int) or pool < 1:
            raise UserError(f"sampler.pool={pool!r}: must be an integer >= 1 (batches scored together).")
        if pool > 1 and mode != "efficient":
            raise UserError(f"sampler.pool={pool} pools batches for the efficient mode; with sampler.mode={mode} the "
                            f"student would train on all {pool} batches at once. Use sampler.mode=efficient.")
        if not isinstance(min_keep, int) or isinstance(min_keep, bool) or min_keep < 0:
            raise UserError(f"sampler.min_keep={min_keep!r}: an integer >= 0 (1: every batch distils at least one "
                            f"row; 0: the authors' k = floor(r·B), which can be 0).")
        if min_keep == 0 and mode == "efficient":
            raise UserError("sampler.min_keep=0 lets k be 0, and in sampler.mode=efficient the student would then "
                            "train on no row at all: use sampler.mode=faithful (the authors' code: CE on every row, "
                            "KD on the k), or sampler.min_keep=1.")
        self.ratio, self.mode, self.score_dropout, self.pool = ratio, mode, score_dropout, pool
        self.min_keep = min_keep
        self.stats: dict[str, float | torch.Tensor] = {}

    def check(self, num_labels: int, task: str) -> None:
        """Refuse a ranking that has no meaning for the task (uncertainty of a regression)."""

    def order(self, logits: torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor:
        """The batch rows, most wanted first."""
        raise NotImplementedError

    def select(self, logits: torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor:
        rows = self.order(logits, size, device)[:keep_count(size, self.ratio, self.min_keep)].sort().values
        self.stats = {"selected": rows.numel() / size}
        return rows

    def rows_to_train(self, score: Callable[[], torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
        """Batch rows the student runs forward and backward on; ``score()`` is the no-grad scoring pass."""
        if self.mode == "faithful":
            return torch.arange(size, device=device)
        return self.select(score() if self.needs_scores else None, size, device)

    def rows_to_distil(self, logits: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """Positions within the trained rows that get KD; ``logits`` are the training forward's (detached)."""
        if self.mode == "efficient":
            return torch.arange(trained.numel(), device=trained.device)
        return self.select(logits if self.needs_scores else None, trained.numel(), trained.device)


class AllInstances(Sampler):
    """``sampler=none``: static KD queries the teachers on every row, S = {1, …, B} (``ratio`` is ignored, so that
    a sweep over samplers and ratios can include it)."""

    def __init__(self, ratio: float = 1.0, mode: str = "efficient", score_dropout: bool = False, pool: int = 1,
                 min_keep: int = 1):
        if pool != 1:
            raise UserError(f"sampler.pool={pool}: sampler=none keeps every row, so a pool would only make the batch "
                            f"{pool} times larger; set distill.batch_size instead.")
        super().__init__(1.0, mode, score_dropout)

    def order(self, logits, size, device):
        return torch.arange(size, device=device)


class RandomInstances(Sampler):
    """``sampler=random``: k rows drawn uniformly without replacement; needs no scores, so ``efficient`` skips the
    scoring pass (the paper's random costs exactly r of full KD)."""

    def order(self, logits, size, device):
        return torch.randperm(size, device=device)


class MostUncertain(Sampler):
    """``sampler=entropy|margin|least_confidence``: the k rows of highest uncertainty u
    (:func:`dkd.strategies.uncertainty.uncertainty`: normalised entropy, 1 − margin, or least confidence);
    ``reverse=true`` keeps the k most certain (the authors' ``entropy-r``, ``confidence-r``). Ties keep batch order."""

    needs_scores = True

    def __init__(self, measure: str = "entropy", reverse: bool = False, ratio: float = 0.1, mode: str = "efficient",
                 score_dropout: bool = False, pool: int = 1, min_keep: int = 1):
        if measure not in MEASURES:
            raise UserError(f"sampler.measure={measure!r}: choose one of {sorted(MEASURES)}.")
        super().__init__(ratio, mode, score_dropout, pool, min_keep)
        self.measure, self.reverse = measure, reverse
        self._u: torch.Tensor | None = None

    def check(self, num_labels: int, task: str) -> None:
        if num_labels < 2:
            raise UserError(f"sampler measure {self.measure}: task {task} is a regression, where the student's "
                            f"uncertainty has no meaning; use sampler=none or sampler=random.")

    def order(self, logits, size, device):
        self._u = uncertainty(logits, self.measure)
        return self._u.sort(descending=not self.reverse, stable=True).indices

    def select(self, logits, size, device):
        rows = super().select(logits, size, device)
        self.stats["u_all"] = self._u.mean()  # tensors: no host sync here
        if rows.numel():  # none with sampler.min_keep=0 and r·B < 1
            self.stats["u_selected"] = self._u[rows].mean()
        return rows
