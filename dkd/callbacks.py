"""Lightning callbacks: training throughput."""
from __future__ import annotations

import time

from pytorch_lightning import Callback


class Throughput(Callback):
    """Counts train examples per second of training-step time (data loading and evaluation excluded)."""

    def __init__(self):
        self.examples = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.examples += len(batch["labels"]) * trainer.world_size

    @property
    def examples_per_second(self) -> float | None:
        """None where training ran in other processes (``ddp_spawn``), whose counts stay there."""
        return self.examples / self.seconds if self.seconds else None

    def state_dict(self) -> dict:
        return {"examples": self.examples, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.examples, self.seconds = state["examples"], state["seconds"]
