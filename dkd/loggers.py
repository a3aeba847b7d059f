"""Experiment loggers that need more than a ``_target_``, and the training curves of a run's CSV log as a PNG."""
from __future__ import annotations

import csv
import logging
import netrc
import os
from pathlib import Path

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from dkd.jobs.requeue import resuming, wandb_id

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(offline: bool | None = None, **kwargs):
    """A ``WandbLogger`` that runs offline when no API key is configured (``offline=null``), so runs never block
    on a login prompt; sync them later with ``wandb sync``."""
    from pytorch_lightning.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not has_wandb_credentials()
        if offline:
            why = "WANDB_MODE=offline" if os.environ.get("WANDB_MODE") == "offline" else "no W&B API key found"
            log.info("W&B: %s, logging offline under %s (upload later with `wandb sync`)", why, kwargs.get("save_dir"))
    kwargs.setdefault("id", wandb_id(str(kwargs.get("save_dir"))))  # a requeued job resumes its W&B run
    return WandbLogger(offline=offline, resume="allow", **kwargs)


def finish_wandb(preempting: bool = False) -> None:
    """Close the active W&B run, so that each job of a multirun gets its own; ``preempting``: the job is requeued
    and its run resumes (W&B shows it as preempted, not finished)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        if preempting:
            wandb.run.mark_preempting()
        wandb.finish()


class CSVLog(CSVLogger):
    """Lightning's ``CSVLogger``, except that in a requeued job (:mod:`dkd.jobs.requeue`) the new attempt continues the
    ``metrics.csv`` of the earlier ones (Lightning's writer deletes it), so curves and reports hold the whole run."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and resuming():
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return super().experiment


class _ContinuedWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):  # the earlier attempt's columns: new rows extend its header
            with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
                self.metrics_keys = sorted(csv.DictReader(fh).fieldnames or [])


# what the strategies decided, logged per step; the class shares of the KD rows (dkd.module.class_shares) are left out
# of the curves: a line per class, each a step's few rows, is noise (their run means are in metrics.json)
DECISIONS = ("train/sampler_", "train/adoption_", "train/weighting_")
CLASS_SHARES = "train/sampler_class_"


def decision_curves(columns) -> list[str]:
    """The columns of a CSV log to draw or keep as the strategies' curves."""
    return [c for c in columns if c.startswith(DECISIONS) and not c.startswith(CLASS_SHARES)]


def plot_curves(metrics_csv: Path, png: Path) -> Path | None:
    """Training losses per step and dev metrics per epoch from a Lightning CSV log, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    columns = rows[0].keys()
    losses = [c for c in columns if c in ("train/loss", "train/ce") or c.startswith(("train/kd", "train/pt"))]
    decided = decision_curves(columns)
    dev = [c for c in columns if c.startswith("dev")]
    fig, axes = plt.subplots(1, 3 if decided else 2, figsize=(16 if decided else 11, 4))
    left, right = axes[0], axes[-1]
    for ax, names, title in ((left, losses, "training"), *([(axes[1], decided, "strategies")] if decided else [])):
        for name in names:
            points = [(int(r["step"]), float(r[name])) for r in rows if r.get(name)]
            if points:
                ax.plot(*zip(*points), label=name.removeprefix("train/"), linewidth=1)
        ax.set(xlabel="step", ylabel="loss" if ax is left else "share, weight, u", title=title)
        if ax.lines:
            ax.legend(fontsize=7)
    for name in dev:
        points = sorted({int(r["epoch"]): float(r[name]) for r in rows if r.get(name)}.items())
        if points:
            right.plot(*zip(*points), marker="o", label=name)
    right.set(xlabel="epoch", ylabel="metric", title="dev")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    if right.lines:
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
