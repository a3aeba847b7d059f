"""Lightning callbacks: training throughput and the RNG state for exact resume (always added, as is
:class:`dkd.flops.FlopCounter`), a line per epoch in the log when the progress bar is off, and the interruption
checkpoint (``callbacks.on_exception_checkpoint``)."""
from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from pytorch_lightning import Callback

log = logging.getLogger(__name__)


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


class EpochLog(Callback):
    """One log line per validation: epoch, optimizer step, minutes since training began, the dev metrics and the last
    ``train/loss``. Added when ``trainer.enable_progress_bar=false``, so that a batch job's or a cluster job's log
    shows where a long fit stands (the progress bar, when on, shows the same)."""

    def __init__(self):
        self._start = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        # on_validation_end, not on_validation_epoch_end: callbacks' epoch-end hooks run before the module logs
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        shown = {k: float(v) for k, v in sorted(trainer.callback_metrics.items())
                 if k.startswith("dev") or k == "train/loss"}
        log.info("epoch %d/%d, step %d/%d, %.1f min: %s", trainer.current_epoch + 1, trainer.max_epochs,
                 trainer.global_step, trainer.estimated_stepping_batches, (time.monotonic() - self._start) / 60,
                 ", ".join(f"{k} {v:.4f}" for k, v in shown.items()) or "no metrics logged")


class RngState(Callback):
    """Carries the RNG states (Python, NumPy, torch CPU and CUDA) of every rank in checkpoints and restores each
    rank's own right before the first training batch after a resume, so that dropout draws what an uninterrupted run
    would have drawn. Lightning saves no RNG state; restoring at the first batch (not at load) skips whatever set-up
    drew meanwhile."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return per_rank(_rng_state())

    def load_state_dict(self, state: dict) -> None:
        self._pending = own_rank(state)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            _set_rng_state(self._pending)
            self._pending = None


def per_rank(state):
    """``{"ranks": [each rank's state]}``: for checkpoint hooks, which run on every rank while rank 0 writes."""
    if dist.is_available() and dist.is_initialized():
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, state)
        return {"ranks": states}
    return {"ranks": [state]}


def own_rank(state: dict):
    """This rank's state out of :func:`per_rank`'s (a run resumed on fewer or more ranks wraps around)."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return state["ranks"][rank % len(state["ranks"])]


def _rng_state() -> dict:
    # tensors and plain tuples only: Lightning loads checkpoints with torch.load(weights_only=True)
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class InterruptCheckpoint(Callback):
    """A crash, Ctrl-C or SIGTERM during training saves ``<dirpath>/<filename>.ckpt`` to resume from exactly.

    Not Lightning's ``OnExceptionCheckpoint``: with that callback present, Lightning turns ``fit(ckpt_path=None)``
    into ``ckpt_path="last"``, so a run started in a folder holding an old checkpoint would silently resume from it.
    Saves only once a training batch has started in this process: an exception while setting up or restoring (say,
    a bad ``ckpt_path``) must not overwrite a good checkpoint with an untrained state.
    """

    def __init__(self, dirpath: str, filename: str = "on_exception"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._trained = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._trained = True

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self._trained:  # written whole or not at all: a job killed while saving keeps the earlier file
            partial = self.path.with_suffix(".ckpt.partial")
            trainer.save_checkpoint(partial)
            if trainer.is_global_zero:
                os.replace(partial, self.path)
