"""The teacher store: fine-tuned teachers kept under ``<teachers_dir>/<task>/<model>-<recipe key>/``.

The key is a digest of the teacher's recipe: the model (by the content of its files), the task and its labels, the
data itself (every text and label after ``task.train_limit`` / ``task.dev_limit``, whatever file or hub it came from),
``data.max_seq_length``, the fine-tuning settings, the trainer settings that change the result, and how the checkpoint
is selected. A different recipe gets a different folder, never a mismatched teacher; the same recipe is reused by
every run and seed. ``teacher.dirs.<role>=<folder>`` uses a fine-tuned teacher as is, bypassing the store.

Written safely: a teacher is saved into a staging folder and renamed into place when complete (a run killed
mid-save leaves nothing a later run would load), and built under a file lock, so that concurrent runs needing the
same missing teacher fine-tune it once: the second waits and reuses it.

List what is stored: ``python -m dkd.teachers [teachers_dir]``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from dkd.models import model_identity, short_name
from dkd.paths import ROOT
from dkd.tasks import TaskSpec

log = logging.getLogger(__name__)

RECIPE, METRICS = "recipe.json", "metrics.json"
# Trainer keys that change where or how fast a fine-tuning runs, or what it prints, not the teacher it produces;
# every other trainer key is part of the recipe (so a quick `+trainer.max_steps=10` teacher is never reused).
TRAINER_IGNORED = {"_target_", "accelerator", "strategy", "deterministic", "benchmark", "log_every_n_steps",
                   "num_sanity_val_steps", "enable_model_summary", "enable_progress_bar", "default_root_dir",
                   "profiler", "detect_anomaly", "barebones"}
# Trainer keys at the value Lightning takes when they are absent: a config that names them and one that does not
# train the same teacher (conf/trainer added num_nodes for cluster launchers; stored teachers stay valid)
TRAINER_DEFAULTS = {"num_nodes": 1}
# Callbacks that only report or save; every other callback (early stopping, SWA, a monitored checkpoint) is part
# of the recipe, less the keys that only name its files.
CALLBACKS_IGNORED = ("ProgressBar", "TQDMProgressBar", "RichProgressBar", "LearningRateMonitor", "ModelSummary",
                     "RichModelSummary", "InterruptCheckpoint", "Throughput")
CALLBACK_FILE_KEYS = {"dirpath", "filename", "auto_insert_metric_name", "save_last", "verbose",
                      "enable_version_counter", "save_weights_only"}


# finetune keys at the value every teacher stored before the key existed was fine-tuned with: in the recipe, left out
# of its key there, so those teachers keep their keys (``seed``: the job's seed then, 42 for a default run)
FINETUNE_DEFAULTS = {"seed": 42, "warmup_rounding": "floor", "adamw": "auto"}


def recipe(cfg: DictConfig, role: str, spec: TaskSpec, data_id: str) -> dict:
    """Everything a fine-tuned teacher depends on, its own seed (``finetune.seed``) included; the job's ``seed`` varies
    students, not teachers. ``model`` names the model for people; the key uses ``model_identity`` (see
    :func:`recipe_key`)."""
    model = cfg.backbone.teachers[role]
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    return {
        "model": model, "model_identity": model_identity(model), "task": spec.name,
        "labels": list(spec.labels) if spec.labels else None, "data": data_id,
        "max_seq_length": cfg.data.max_seq_length,
        # data.padding=max_length as a key of its own: teachers stored before the option keep their key
        **({"padding": cfg.data.padding} if cfg.data.padding != "longest" else {}),
        "finetune": OmegaConf.to_container(cfg.finetune, resolve=True),
        "trainer": {k: v for k, v in trainer.items()
                    if k not in TRAINER_IGNORED and not (k in TRAINER_DEFAULTS and v == TRAINER_DEFAULTS[k])},
        "callbacks": _callbacks(cfg),
        # Teachers stored before this key existed were fine-tuned with dropout off (Lightning 2.6 no longer calls
        # .train(), and HF loads models in eval mode): a different recipe, so they are never reused for new runs.
        "dropout_in_training": True,
    }


def _callbacks(cfg: DictConfig) -> dict:
    """The callbacks that change the stored teacher: what selects its checkpoint, stops or averages its training."""
    out = {}
    for name, conf in (cfg.get("callbacks") or {}).items():
        if not conf:
            continue
        target = str(conf.get("_target_", ""))
        checkpoint = target.endswith("ModelCheckpoint")
        saves_best = conf.get("monitor") and cfg.trainer.enable_checkpointing
        if target.endswith(CALLBACKS_IGNORED) or (checkpoint and not saves_best):
            continue
        out[name] = {k: v for k, v in OmegaConf.to_container(conf, resolve=True).items() if k not in CALLBACK_FILE_KEYS}
    return out


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def keyed(r: dict) -> dict:
    """What a recipe's key digests: all but the model's name (the same files under another path are the same
    teacher), and the finetune keys at :data:`FINETUNE_DEFAULTS`."""
    finetune = {k: v for k, v in (r.get("finetune") or {}).items()
                if not (k in FINETUNE_DEFAULTS and v == FINETUNE_DEFAULTS[k])}
    return {**{k: v for k, v in r.items() if k != "model"}, "finetune": finetune}


def recipe_key(r: dict) -> str:
    """The digest of a recipe (:func:`keyed`)."""
    return hashlib.sha256(json.dumps(keyed(r), sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class TeacherSource:
    """Where the ``role`` teacher comes from: the store (``recipe`` set) or a folder given as is (``recipe=None``)."""

    role: str
    model: str
    folder: Path
    recipe: dict | None

    @property
    def ready(self) -> bool:
        return self.recipe is None or TeacherStore.complete(self.folder)


class TeacherStore:
    """Fine-tuned teachers under ``root``, one folder per recipe."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folder(self, r: dict) -> Path:
        return self.root / r["task"] / f"{short_name(r['model'])}-{recipe_key(r)}"

    @staticmethod
    def complete(folder: Path) -> bool:
        """Published folders are complete by construction (renamed into place last); both files are checked anyway."""
        return (folder / RECIPE).is_file() and (folder / METRICS).is_file()

    @staticmethod
    def staging(folder: Path) -> Path:
        return folder.with_name(f".{folder.name}.staging-{os.getpid()}")

    @staticmethod
    def publish(staging: Path, folder: Path, r: dict, metrics: dict) -> None:
        """Write the recipe and metrics into the staging folder, then rename it into place (atomic on one disk)."""
        (staging / METRICS).write_text(json.dumps(metrics, indent=2, default=str))
        (staging / RECIPE).write_text(json.dumps(r, indent=2, sort_keys=True, default=str))
        staging.rename(folder)

    @contextlib.contextmanager
    def building(self, folder: Path):
        """Held while ``folder`` is fine-tuned: a file lock, so that a concurrent run waits for this one and then
        reuses its teacher. Only rank 0 of a DDP run locks (the other ranks train along with it, they cannot wait).
        Leftover staging folders of killed runs are removed."""
        if rank_zero_only.rank != 0:
            yield
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder.with_name(f".{folder.name}.lock"))
        try:
            lock.acquire(timeout=1)
        except Timeout:
            log.info("Another run is fine-tuning %s; waiting for it (lock %s)", folder, lock.lock_file)
            lock.acquire()
        try:
            for stale in folder.parent.glob(f".{folder.name}.staging-*"):
                log.info("Removing %s, left by a run that stopped while saving", stale)
                shutil.rmtree(stale, ignore_errors=True)
            if folder.exists() and not self.complete(folder):  # not written by the store: keep it, out of the way
                aside = folder.with_name(f".{folder.name}.incomplete-{int(time.time())}")
                log.warning("%s has no %s or %s, so it is no stored teacher: moved aside to %s", folder, RECIPE,
                            METRICS, aside)
                folder.rename(aside)
            yield
        finally:
            lock.release()

    def differences(self, r: dict) -> dict[str, list[str]]:
        """Stored teachers of the same model and task whose recipe differs from ``r``: folder → differing keys."""
        out = {}
        for other in sorted(self.folder(r).parent.glob(f"{short_name(r['model'])}-*/{RECIPE}")):
            stored = json.loads(other.read_text())
            out[str(other.parent)] = sorted(_diff(keyed(stored), keyed(json.loads(json.dumps(r, default=str)))))
        return out

    def list(self) -> list[dict]:
        rows = []
        for recipe_file in sorted(self.root.glob(f"*/*/{RECIPE}")):
            folder = recipe_file.parent
            if folder.name.startswith(".") or not self.complete(folder):
                continue
            r = json.loads(recipe_file.read_text())
            m = json.loads((folder / METRICS).read_text())
            rows.append({"folder": str(folder), "task": r["task"], "model": r["model"],
                         "train_examples": m.get("train_examples"), "dev_score": m.get("dev", {}).get("dev/score"),
                         "lr": r["finetune"].get("lr"), "epochs": r["finetune"].get("epochs"),
                         "max_seq_length": r["max_seq_length"], "data": r["data"]})
        return rows


def agree(stored: bool) -> bool:
    """Rank 0's answer on every rank of a DDP run whose processes already talk (after its first ``fit``): whether a
    teacher is stored must be one decision, or the ranks that think it missing wait in ``fit`` forever."""
    if not (dist.is_available() and dist.is_initialized()):
        return stored
    box = [stored]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main(argv: list[str] | None = None) -> None:
    """``python -m dkd.teachers [teachers_dir]``: one line per stored teacher."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    default = Path(os.environ.get("DKD_ROOT", ROOT)) / "outputs" / "teachers"
    parser.add_argument("teachers_dir", nargs="?", default=str(default), help=f"default: {default}")
    args = parser.parse_args(argv)
    rows = TeacherStore(args.teachers_dir).list()
    if not rows:
        print(f"No fine-tuned teachers under {args.teachers_dir}.")
        return
    for row in rows:
        score = "-" if row["dev_score"] is None else f"{row['dev_score']:.4f}"
        print(f"{row['task']:<8} {short_name(row['model']):<24} dev/score {score}  {row['train_examples']} train ex, "
              f"lr {row['lr']}, {row['epochs']} ep, len {row['max_seq_length']}, data {row['data']}\n"
              f"         {row['folder']}")
    print("\nReuse one as is with teacher.dirs.<role>=<folder>; a run with the same recipe finds it by itself.")


if __name__ == "__main__":
    main()
