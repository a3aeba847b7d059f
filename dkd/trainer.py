"""The Lightning ``Trainer`` of a stage, with the callbacks of the ``callbacks`` config group."""
from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.callbacks.progress import ProgressBar

from dkd.callbacks import EpochLog, InterruptCheckpoint, RngState, Throughput
from dkd.errors import UserError, one_line
from dkd.flops import FlopCounter
from dkd.jobs.requeue import StopAtBatchEnd

log = logging.getLogger(__name__)


def build_callbacks(cfg: DictConfig, ckpt_dir: Path, has_logger: bool) -> list[Callback]:
    """``callbacks.*`` instantiated; a callback that takes a ``dirpath`` and is given none writes into ``ckpt_dir``.
    ``trainer.enable_checkpointing=false`` drops the checkpoint callbacks and ``trainer.enable_progress_bar=false`` the
    progress bar, as their flags say; without the bar, :class:`dkd.callbacks.EpochLog` logs a line per epoch."""
    dropped = {
        (ModelCheckpoint, InterruptCheckpoint): not cfg.trainer.enable_checkpointing,
        (ProgressBar,): not cfg.trainer.enable_progress_bar,
        (LearningRateMonitor,): not has_logger,  # it has nowhere to write
    }
    callbacks = []
    for name, conf in (cfg.get("callbacks") or {}).items():
        if not conf:
            continue
        if "_target_" not in conf:
            raise UserError(f"callbacks.{name} has no _target_: give the callback's class, e.g. "
                            f"+callbacks.{name}._target_=pytorch_lightning.callbacks.EarlyStopping")
        try:
            takes_dir = "dirpath" in inspect.signature(get_object(conf._target_)).parameters
            given = {"dirpath": str(ckpt_dir)} if takes_dir and not conf.get("dirpath") else {}
            callback = instantiate(conf, **given)
        except Exception as err:  # noqa: BLE001 - a bad class or argument in the user's config
            raise UserError(f"callbacks.{name}: {one_line(err)}") from err
        if not any(isinstance(callback, kinds) and off for kinds, off in dropped.items()):
            callbacks.append(callback)
    # DKD's own first: a batch's counts are in before any other callback can stop the run at that batch's end
    quiet = [] if cfg.trainer.enable_progress_bar else [EpochLog()]
    return [Throughput(), FlopCounter(), RngState(), *callbacks, *quiet, StopAtBatchEnd()]


def stage_checkpoints(run_dir: Path, ckpt_path: str | None) -> Path:
    """Where a stage's checkpoints go: beside the one it resumes from, else ``<run_dir>/checkpoints``."""
    return Path(ckpt_path).parent if ckpt_path else run_dir / "checkpoints"


def build_trainer(cfg: DictConfig, out_dir: Path, max_epochs: int, loggers: list, ckpt_path: str | None = None
                  ) -> pl.Trainer:
    """The configured ``Trainer``. On resume, checkpoints go on in the resumed run's folder so that its best dev score
    is restored with it (ModelCheckpoint forgets it when the folder changes). DKD shards the data itself
    (:class:`dkd.data.EpochSampler`), so Lightning's sampler replacement is off."""
    callbacks = build_callbacks(cfg, stage_checkpoints(out_dir, ckpt_path), has_logger=bool(loggers))
    try:
        return instantiate(cfg.trainer, max_epochs=max_epochs, logger=loggers or False, callbacks=callbacks,
                           default_root_dir=str(out_dir), use_distributed_sampler=False,
                           enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks))
    except Exception as err:  # noqa: BLE001 - unknown keys, no GPU, bad precision or strategy: all the user's options
        raise UserError(f"trainer options: {one_line(err)} (see conf/trainer/ and the Lightning Trainer's arguments)"
                        ) from err


def remove_resumable(t: pl.Trainer, since: float, ckpt_path: str | None = None) -> list[str]:
    """Deletes the resume points of a stage that ended well and returns them (rank 0 only): the file that a checkpoint
    callback selecting by no score rewrites under one fixed name (``last.ckpt``; not a series such as
    ``{epoch}-{step}``), and the interruption checkpoint if this run wrote it (since ``since``) or resumed from it."""
    files = [Path(c.dirpath) / f"{c.filename}{c.FILE_EXTENSION}" for c in t.checkpoint_callbacks
             if isinstance(c, ModelCheckpoint) and not c.monitor and c.dirpath and c.filename and "{" not in c.filename]
    resumed = Path(ckpt_path).resolve() if ckpt_path else None
    files += [c.path for c in t.callbacks if isinstance(c, InterruptCheckpoint) and c.path.is_file()
              and (c.path.stat().st_mtime >= since or c.path.resolve() == resumed)]
    removed = []
    if t.is_global_zero:
        for path in files:
            if path.is_file():
                path.unlink()
                removed.append(str(path))
    return removed


def best_checkpoint(t: pl.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that selects by a monitored score (``callbacks.model_checkpoint``), if any."""
    return next((c for c in t.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
