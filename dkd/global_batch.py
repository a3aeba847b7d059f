"""The global batch of a step under DDP, so that many processes decide as one process would (``distill.scope``).

With R ranks of b rows each, rank r's row j is row ``j·R + r`` of the global batch: :class:`dkd.data.EpochSampler`
deals the examples out in turn, so one process with batch R·b holds the same rows in this order. Under
``distill.scope=global`` (the default) the strategies decide over the global batch: the sampler ranks the scores of
all R·b rows and keeps the top ``max(m, ⌊r·R·b⌋)``, the hard split bins and the soft mode's ū take every KD row, and
each rank then trains its own part of that decision. Only the scores cross the ranks (logits, a few numbers a row),
never the activations.

The loss is the one process's loss split over the ranks: each rank's share is ``R/n · Σ_{own rows} ℓ_i`` (n: the rows
of the global batch that term is a mean over), so that DDP's mean of the ranks' gradients is the gradient of
``(1/n) Σ_i ℓ_i``. A rank that owns none of the rows trains one of its rows at weight 0, so that every rank still
takes part in the gradient exchange.

``distill.scope=device`` is the authors' code under several GPUs (HF Trainer): each rank decides over its own b rows.

Limits, said where they apply: with ``adoption=soft`` and weights that carry gradient (``adoption.detach=false`` or
``adoption.faithful=true``) the decision is global but ū's gradient reaches each rank's own rows only (a warning at
the start of the fit says so); one rank may hold more of the selected rows than another (up to all of them), so its
step costs more; the idle rank's stand-in row is counted in the FLOPs; the per-teacher loss terms in the log
(``train/kd_<teacher>``) are rank 0's rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

SCOPES = ("global", "device")


class GlobalBatch:
    """One step's view of the global batch: ``world`` ranks, this one ``rank``. ``gather`` stacks a tensor of equal
    shape from every rank (``(R, *shape)``, Lightning's ``all_gather``); ``broadcast`` sends rank 0's tensor to all.
    With one rank (or ``scope=device``) every method hands its input back unchanged: a one-process run computes
    exactly what it did without it."""

    def __init__(self, world: int = 1, rank: int = 0, gather: Callable | None = None,
                 broadcast: Callable | None = None):
        self.world, self.rank, self._gather, self._broadcast = world, rank, gather, broadcast

    @classmethod
    def of(cls, module, scope: str = "global") -> "GlobalBatch":
        """The global batch of ``module``'s trainer (one rank without a trainer: a step called by hand)."""
        trainer = module._trainer  # noqa: SLF001 - None for a step called without a Trainer
        if scope == "device" or trainer is None or trainer.world_size == 1:
            return cls()
        return cls(trainer.world_size, trainer.global_rank, module.all_gather, _broadcast)

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def size(self, local: int) -> int:
        return local * self.world

    def whole(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's rows (equal counts: whole batches) in global order, without gradient."""
        if not self.sharded:
            return local
        stacked = self._gather(local.detach())  # (R, b, ...): row j of rank r at [r, j]
        return stacked.transpose(0, 1).reshape(-1, *local.shape[1:])

    def agree(self, decided: torch.Tensor) -> torch.Tensor:
        """Rank 0's decision for everyone: a random draw differs between ranks, whose RNG streams differ."""
        return self._broadcast(decided) if self.sharded else decided

    def part(self, rows: torch.Tensor) -> "Part":
        """This rank's part of ``rows``, positions in the global batch (ascending) that the step trains on."""
        return Part(rows, self.world, self.rank, self._gather)


def _broadcast(decided: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor, in place on each rank's own device (the decision has the same shape on every rank: k comes
    from the global batch size); not Lightning's object broadcast, which unpickles it onto rank 0's GPU."""
    decided = decided.contiguous()
    torch.distributed.broadcast(decided, src=0)
    return decided


@dataclass
class Part:
    """The rows of the global batch a step trains on (``rows``, ascending positions) and this rank's share of them.

    A per-row tensor of the trained rows is indexed by *trained index* t (the t-th of ``rows``), the same on every
    rank; :attr:`local_rows` are this rank's own rows as positions in its own batch, in trained-index order."""

    rows: torch.Tensor
    world: int = 1
    rank: int = 0
    _gather: Callable | None = None

    def __post_init__(self):
        if self.world == 1:  # every row this rank's: no counting, no host sync on the one-process step
            self.mine, self.idle, self.local_rows = torch.arange(self.total, device=self.rows.device), False, self.rows
            return
        owner = self.rows % self.world
        self.counts = [int((owner == r).sum()) for r in range(self.world)]
        self.mine = (owner == self.rank).nonzero().flatten()  # trained indices of this rank's rows
        self._owner = owner
        # a rank without rows trains its first row at weight 0: DDP's gradient exchange needs every rank
        self.idle = self.mine.numel() == 0
        own = self.rows[self.mine] // self.world
        self.local_rows = own.new_zeros(1) if self.idle else own

    @property
    def total(self) -> int:
        return self.rows.numel()

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's per-row tensor of its own trained rows, in trained-index order; this rank's rows keep their
        gradient (the others' carry none)."""
        if self.world == 1:
            return local
        own = local[:self.mine.numel()]  # not the idle rank's stand-in row
        longest = max(self.counts)
        padded = own.detach().new_zeros((longest, *local.shape[1:]))
        padded[:own.size(0)] = own.detach()
        stacked = self._gather(padded)  # (R, longest, ...)
        out = local.new_empty((self.total, *local.shape[1:]))
        for r, count in enumerate(self.counts):
            out[self._owner == r] = stacked[r, :count].to(out.dtype)
        return out.detach().index_copy(0, self.mine, own)

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Of trained indices ``index``, which are this rank's (a mask over ``index``) and their positions in its
        own trained rows."""
        if self.world == 1:
            return torch.ones_like(index, dtype=torch.bool), index
        mask = self._owner[index] == self.rank
        position = torch.full_like(self.rows, -1)
        position[self.mine] = torch.arange(self.mine.numel(), device=self.rows.device)
        return mask, position[index[mask]]

    def mean(self, loss: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """This rank's share of the mean of a per-row loss over all trained rows; ``loss(reduction)`` computes it
        over this rank's rows ("mean" with one rank: exactly the one-process loss)."""
        if self.world == 1:
            return loss("mean")
        return loss("sum") * (0.0 if self.idle else self.world / max(self.total, 1))

    def share(self, value: torch.Tensor) -> torch.Tensor:
        """A mean over the global rows (already divided by their count) as this rank's share: ×R for DDP's mean."""
        return value if self.world == 1 else value * self.world
