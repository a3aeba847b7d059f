"""Lightning callbacks: training throughput."""
from __future__ import annotations

import time

import torch
from pytorch_lightning import Callback


class Throughput(Callback):
    """Train examples per second of training-step time (data loading and evaluation excluded), over all ranks.

    Logged as ``train/examples_per_s`` at each epoch end, so that it reaches the loggers and, through
    ``trainer.callback_metrics``, the main process of a spawned DDP run.
    """

    key = "train/examples_per_s"

    def __init__(self):
        self.examples = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # time the kernels, not their launch
        self.seconds += time.perf_counter() - self._start
        self.examples += len(batch["labels"]) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.seconds:
            pl_module.log(self.key, self.examples / self.seconds)

    def state_dict(self) -> dict:
        return {"examples": self.examples, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.examples, self.seconds = state["examples"], state["seconds"]
