"""Preemption and time-outs on a cluster: the job stops after the training batch it is in, saves where it is,
requeues itself, and the requeued job resumes in the same folder from ``<output dir>/.resume.json``.

The signals:

- ``USR2`` inside a submitit job (``hydra/launcher=slurm`` or ``local``): submitit's signal before a time-out or a
  preemption (``--signal=USR2@120``). After DKD has saved, submitit's own handler runs: it calls the launcher's
  ``checkpoint()``, which resubmits the same overrides, and requeues the job (``scontrol requeue``; the local
  launcher restarts it). Hydra puts the requeued job in the same folder, where it finds the marker.
- ``USR1`` inside a plain ``sbatch`` job (``#SBATCH --signal=USR1@120 --requeue``, Lightning's SLURM convention):
  DKD saves and runs ``scontrol requeue``; the run folder is the job's own
  (``hydra.run.dir=outputs/runs/slurm-$SLURM_JOB_ID``; a warning says so when it is not), so the requeued job finds
  its marker. DKD's handler replaces Lightning's, which would save in the middle of a step.
- ``SIGTERM`` (anywhere: DKD's handler is installed for the whole job, Lightning's only during ``fit``): saves and
  exits with 143; a cluster that requeues the job (``PreemptMode=REQUEUE``) resumes it from the marker.

While a model trains, the stop waits for the end of the training batch (the path the exact-resume tests cover:
Lightning's SIGTERM handling and :class:`dkd.callbacks.InterruptCheckpoint`); a signal at any other time stops the
job at once (its work before training is redone), except after the final model is exported, when the job finishes.

The marker never loses its place: a stop with no newer checkpoint keeps the resume point the attempt started from; a
stage that completes clears it from the marker; a checkpoint gone since (a stage tidied, then the job died) makes
that stage start over, or be skipped where its product is stored (a teacher in the store, the run's
``metrics.json``); a fit that ended (early stopping, or its last epoch) is recorded, so that its stage resumes at the
evaluation and never trains more epochs; and the marker holds the job's resolved config, so that an attempt whose
config changed is refused, naming the keys.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pytorch_lightning import Callback
from pytorch_lightning.utilities import rank_zero_only

from dkd.errors import UserError
from dkd.files import write_json

log = logging.getLogger(__name__)

MARKER = ".resume.json"


class Preempted(BaseException):
    """A requeue signal that arrived while no model was training."""


@dataclass
class _State:
    signum: int | None = None  # the requeue signal received, if any
    fitting: bool = False
    finishing: bool = False  # the final model is exported: a signal now is logged, the job finishes
    stage: tuple[str, Path] | None = None  # the running stage's name and checkpoint folder
    previous: dict = field(default_factory=dict)  # the handlers DKD's replaced (submitit's, to requeue with)
    attempt_start: float = 0.0
    resumed: dict | None = None  # the marker this attempt started from
    wandb_ids: dict = field(default_factory=dict)  # save_dir -> W&B run id, kept across attempts
    output_dir: Path | None = None
    config: dict = field(default_factory=dict)  # the job's resolved config, flattened (what an attempt must match)
    fit_ended: dict | None = None  # {"stage", "metrics", "best", "epoch"} of a fit that ended in this job


STATE = _State()


def requeue_signals() -> dict[int, str]:
    """The signals that ask this job to save and requeue, by where it runs."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        from submitit import JobEnvironment

        return {JobEnvironment._usr_sig(): "submitit"}
    if plain_slurm_job():
        return {signal.SIGUSR1: "slurm"}
    return {}


def plain_slurm_job() -> bool:
    """A batch job of SLURM started by ``sbatch`` running ``python train.py`` (not an interactive allocation)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _on_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    if STATE.finishing:
        log.warning("%s received while the job finishes: it ends now, nothing to resume", name)
        STATE.signum = STATE.signum or signum  # what is left (the compression report) is skipped
        return
    if STATE.signum is not None:  # StopAtBatchEnd's SIGTERM to Lightning, or the scheduler's after `scontrol requeue`
        return
    STATE.signum = STATE.signum or signum  # the requeue signal decides how the job is requeued
    if STATE.fitting:
        log.warning("%s received: stopping after this training batch to save and requeue", name)
        return
    log.warning("%s received outside training: stopping now to requeue (the work since the last stage is redone)",
                name)
    raise Preempted(name)


# settings that change where and how a job runs, not what it computes: an attempt may differ in them
RUN_ONLY = ("threads", "logger", "trainer.enable_progress_bar", "data.num_workers", "compress", "ckpt_path")


def flat_config(config: dict, prefix: str = "") -> dict:
    """The resolved config as ``{"distill.lr": 2e-05, ...}``, less :data:`RUN_ONLY`."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if any(name == r or name.startswith(f"{r}.") for r in RUN_ONLY):
            continue
        if isinstance(value, dict) and value:
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = value
    return json.loads(json.dumps(out, default=str))


def same_config(config: dict) -> bool:
    """Whether a resolved config (a metrics.json's) is this job's, less the run-only keys."""
    return flat_config(config) == STATE.config


@contextmanager
def installed(output_dir: str, config: dict | None = None):
    """DKD's requeue handlers for this job's run, restored afterwards; reads a marker left by an earlier attempt and
    refuses it when the job's resolved ``config`` changed since."""
    STATE.__init__()
    STATE.attempt_start = time.time()
    STATE.output_dir = Path(output_dir)
    STATE.config = flat_config(config or {})
    STATE.resumed = read_marker(Path(output_dir))
    if STATE.resumed:
        check_config(STATE.resumed, Path(output_dir) / MARKER)
        STATE.wandb_ids = dict(STATE.resumed.get("wandb_ids", {}))
    signals = requeue_signals()
    job = os.environ.get("SLURM_JOB_ID", "")
    if "slurm" in signals.values() and job not in Path(output_dir).name:
        log.warning("A plain sbatch job in %s: once requeued it would start over in a new folder. Give it the job's "
                    "own: python train.py hydra.run.dir=outputs/runs/slurm-$SLURM_JOB_ID ...", output_dir)
    if threading.current_thread() is threading.main_thread():  # Python sets handlers in the main thread only
        # SIGTERM everywhere (outside fit nothing else saves the job's place), except in a submitit job, whose
        # SIGTERM handler is submitit's on purpose: its own requeue makes SLURM send one
        term = set() if "submitit" in signals.values() else {signal.SIGTERM}
        for signum in {*signals, *term}:
            STATE.previous[signum] = signal.signal(signum, _on_signal)
    try:
        yield STATE.resumed
    finally:
        for signum, handler in STATE.previous.items():
            signal.signal(signum, handler)


def read_marker(output_dir: Path) -> dict | None:
    path = output_dir / MARKER
    if not path.is_file():
        return None
    marker = json.loads(path.read_text())
    ckpt = marker.get("ckpt")
    if ckpt and not Path(ckpt).is_file():
        # the stage tidied its checkpoints, then the job died before a newer marker: the stage's product is stored
        # (a teacher in the store, metrics.json), or the stage starts over
        log.warning("%s: checkpoint %s of attempt %d is gone (its stage %s was tidied up): that stage is skipped "
                    "where its result is stored, else it starts over", path, ckpt, marker["attempt"], marker["stage"])
        marker = {**marker, "ckpt": None, "fit_ended": None}
    log.warning("Attempt %d of this job: resuming %s from %s", marker["attempt"] + 1, marker["stage"] or "its start",
                marker.get("ckpt") or "its start (no checkpoint to resume)")
    return marker


def check_config(marker: dict, path: Path) -> None:
    """The attempt's config is the one the marker's checkpoints were trained under."""
    before = marker.get("config")
    if before is None or before == STATE.config:
        return
    keys = sorted(k for k in before.keys() | STATE.config.keys() if before.get(k) != STATE.config.get(k))
    shown = "; ".join(f"{k}: {before.get(k)!r} then, {STATE.config.get(k)!r} now" for k in keys[:8])
    raise UserError(f"{path}: this job's config changed since attempt {marker['attempt']} saved its place ({shown}"
                    f"{'; …' if len(keys) > 8 else ''}). Its checkpoints belong to the old config: restore it (conf/ "
                    f"and the overrides), or delete {path} to run this folder from its start under the new one.")


def resume_from(stage: str, given: str | None = None) -> str | None:
    """The checkpoint the stage ``stage`` resumes from: an earlier attempt's, else ``given`` (``ckpt_path``)."""
    marker = STATE.resumed
    return marker["ckpt"] if marker and marker["stage"] == stage and marker.get("ckpt") else given


def fit_ended(stage: str) -> dict | None:
    """The fit of ``stage`` that an earlier attempt ended (``{"metrics", "best", "epoch"}``), if it did: the stage
    resumes at its evaluation; resumed into ``fit``, Lightning would train more epochs (it restores early stopping's
    counter, not its decision)."""
    marker = STATE.resumed
    ended = (marker or {}).get("fit_ended")
    return ended if ended and marker["stage"] == stage else None


def record_fit_end(metrics: dict, best: str, epoch: int) -> None:
    """The running stage's fit is over (its last epoch, or early stopping; a stop may have come during its last
    validation): kept for a marker written later in the stage."""
    STATE.fit_ended = {"stage": STATE.stage[0] if STATE.stage else None, "metrics": metrics, "best": best,
                       "epoch": epoch}


def completed(stage: str) -> None:
    """``stage`` is over (its product stored): a marker that points into it points nowhere now, on disk too."""
    marker = STATE.resumed
    if marker and marker.get("stage") == stage:
        STATE.resumed = {**marker, "stage": None, "ckpt": None, "fit_ended": None}
        if STATE.output_dir is not None and (STATE.output_dir / MARKER).is_file() and rank_zero_only.rank == 0:
            write_json(STATE.output_dir / MARKER, {**STATE.resumed, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    if STATE.fit_ended and STATE.fit_ended["stage"] == stage:
        STATE.fit_ended = None


@contextmanager
def stage(name: str, ckpt_dir: Path):
    """A stage whose checkpoints in ``ckpt_dir`` a requeue resumes from (kept when the stage is stopped, for the
    marker)."""
    before, STATE.stage = STATE.stage, (name, Path(ckpt_dir))
    yield
    STATE.stage = before


@contextmanager
def fitting():
    """Training: a requeue signal waits for the end of the training batch (:class:`StopAtBatchEnd`)."""
    STATE.fitting = True
    try:
        yield
    finally:
        STATE.fitting = False
    if STATE.signum is not None:  # it came during the last validation: the epoch's last.ckpt holds the whole fit
        raise Preempted(signal.Signals(STATE.signum).name)


def finishing() -> None:
    """The final model is exported: a signal from now on lets the job finish."""
    STATE.finishing = True


def pending() -> bool:
    return STATE.signum is not None


class StopAtBatchEnd(Callback):
    """After the training batch in which a requeue signal arrived, Lightning's SIGTERM handling stops the fit and
    :class:`dkd.callbacks.InterruptCheckpoint` saves the exact state."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if STATE.signum is not None and STATE.fitting:
            signal.raise_signal(signal.SIGTERM)


def wandb_id(save_dir: str) -> str:
    """The W&B run id of the run logging under ``save_dir``: an earlier attempt's (the run resumes), else a new one."""
    if save_dir not in STATE.wandb_ids:  # secrets, not random: the seeded RNG streams stay as they were
        STATE.wandb_ids[save_dir] = secrets.token_hex(4)
    return STATE.wandb_ids[save_dir]


def resuming() -> bool:
    return STATE.resumed is not None


def attempts() -> int:
    return (STATE.resumed or {}).get("attempt", 0) + 1


def _checkpoint_to_resume() -> tuple[str | None, str | None, dict | None]:
    """The stage to resume, its checkpoint, and its ended fit if it ended. Outside a stage: where this attempt
    started from (no newer checkpoint exists, so that place still holds)."""
    earlier = STATE.resumed or {}
    if STATE.stage is None:
        return earlier.get("stage"), earlier.get("ckpt"), earlier.get("fit_ended")
    name, folder = STATE.stage
    ended = STATE.fit_ended if STATE.fit_ended and STATE.fit_ended["stage"] == name else fit_ended(name)
    interrupt, last = folder / "on_exception.ckpt", folder / "last.ckpt"
    if interrupt.is_file() and interrupt.stat().st_mtime >= STATE.attempt_start:
        return name, str(interrupt), ended
    if last.is_file():
        return name, str(last), ended
    return name, resume_from(name), ended


def save_marker(output_dir: Path, why: str) -> dict:
    """``.resume.json``: where the requeued job resumes, and under which config (rank 0 writes it; atomic)."""
    stage_name, ckpt, ended = _checkpoint_to_resume()
    marker = {"attempt": attempts(), "signal": why, "stage": stage_name, "ckpt": ckpt, "fit_ended": ended,
              "config": STATE.config, "wandb_ids": STATE.wandb_ids, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(output_dir / MARKER, marker)
    log.warning("Saved %s: the requeued job resumes %s from %s%s", output_dir / MARKER, stage_name or "its start",
                ckpt or "its start", " at the evaluation (its fit had ended)" if ended else "")
    return marker


def clear_marker(output_dir: Path) -> None:
    (output_dir / MARKER).unlink(missing_ok=True)


def requeue(output_dir: Path) -> None:
    """Save the marker and hand the job back to the scheduler; returns only where nothing requeues (SIGTERM)."""
    signum = STATE.signum or signal.SIGTERM
    save_marker(output_dir, signal.Signals(signum).name)
    how = requeue_signals().get(signum)
    if how == "submitit":  # submitit's handler: the launcher's checkpoint(), the requeue, and the exit
        handler = STATE.previous[signum]
        if callable(handler):
            handler(signum, None)
        else:
            log.error("submitit's %s handler is not installed: nothing requeues this job", signal.Signals(signum).name)
    elif how == "slurm":
        job = os.environ["SLURM_JOB_ID"]
        if os.environ.get("SLURM_ARRAY_JOB_ID"):
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if done.returncode:
            log.error("scontrol requeue %s failed: %s", job, done.stderr.strip())
        else:
            log.warning("Requeued SLURM job %s", job)
        raise SystemExit(128 + signum)
