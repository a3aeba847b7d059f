"""A finished distillation run as the shipping tools read it: its ``metrics.json`` and config, and its dev split(s)
read as the run read them (the compression report, the model card and the predictions all start here)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dkd.data import load_task_data
from dkd.errors import UserError
from dkd.tasks import TaskSpec, task_spec


def run_config(run_dir: Path) -> tuple[dict, DictConfig]:
    """The run's ``metrics.json`` and its config; a folder that is not a finished distillation run is refused."""
    metrics_file = Path(run_dir) / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(f"{metrics_file}: no such file. Give the folder of a finished distillation run "
                        f"(outputs/runs/<date>, or a multirun job's folder).")
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("stage") != "distill" or "student_dir" not in metrics:
        raise UserError(f"{metrics_file} is from a stage={metrics.get('stage')} run: the compression report, the "
                        f"model card and the predictions are a distilled student's; give a distillation run's folder.")
    return metrics, OmegaConf.create(metrics["config"])


def run_dev_splits(cfg: DictConfig) -> tuple[TaskSpec, dict]:
    """The task of a run's config and its dev split(s), read as the run read them."""
    spec = task_spec(cfg)
    custom = {"train": cfg.task.train_file, "dev": cfg.task.dev_file} if spec.name == "custom" else None
    splits = load_task_data(spec, cfg.task.get("data_dir"), custom, cfg.task.train_limit, cfg.task.dev_limit,
                            cfg.data.subset_seed)
    return spec, {name: splits[name] for name in spec.dev_files}  # not the training split
