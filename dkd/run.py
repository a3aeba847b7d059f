"""The two stages as functions of the composed config: fine-tune teacher(s), distil a student."""
from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

from dkd.callbacks import Throughput
from dkd.data import TaskDataModule
from dkd.errors import UserError
from dkd.loggers import finish_wandb
from dkd.models import count_parameters, load_classifier, load_tokenizer, short_name, truncate
from dkd.module import ClassifierSystem, DistillSystem, FineTuneSystem
from dkd.quiet import quiet_libraries
from dkd.report import plot_curves
from dkd.tasks import TaskSpec, custom_task, get_task

log = logging.getLogger(__name__)


def task_wrapper(fn):
    """Logs a failure with its config's output dir and always closes the loggers (one W&B run per multirun job)."""

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig):
        try:
            return fn(cfg)
        except UserError:
            raise  # train.py reports it as one message
        except Exception:
            log.exception("Run failed; its output dir is %s", cfg.paths.output_dir)
            raise
        finally:
            finish_wandb()

    return wrapped


# ------------------------------------------------------------------------------------------------ building blocks
def task_spec(cfg: DictConfig) -> TaskSpec:
    if cfg.task.name == "custom":
        t = cfg.task
        return custom_task(t.text_columns, t.label_column, t.labels, t.metrics, t.train_file, t.dev_file)
    return get_task(cfg.task.name)


def datamodule(cfg: DictConfig, spec: TaskSpec, tokenizers: dict, batch_size: int) -> TaskDataModule:
    custom = {"train": cfg.task.train_file, "dev": cfg.task.dev_file} if spec.name == "custom" else None
    return TaskDataModule(
        spec, tokenizers, data_dir=cfg.task.get("data_dir"), custom_files=custom, batch_size=batch_size,
        max_seq_length=cfg.data.max_seq_length, eval_batch_size=cfg.data.eval_batch_size,
        train_limit=cfg.task.train_limit, dev_limit=cfg.task.dev_limit, subset_seed=cfg.data.subset_seed,
        cache_dir=cfg.data.cache_dir, num_workers=cfg.data.num_workers,
    )


def trainer(cfg: DictConfig, out_dir: Path, max_epochs: int, loggers: list, ckpt_path: str | None = None
            ) -> pl.Trainer:
    """The configured Lightning ``Trainer``; on resume, checkpoints go on in the resumed run's folder so that its
    best dev score is restored with it (ModelCheckpoint forgets it when the folder changes)."""
    callbacks = [Throughput(), ModelCheckpoint(
        dirpath=Path(ckpt_path).parent if ckpt_path else out_dir / "checkpoints", monitor="dev/score", mode="max",
        save_last=True, filename="epoch{epoch}-score{dev/score:.4f}", auto_insert_metric_name=False,
    )]
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return instantiate(cfg.trainer, max_epochs=max_epochs, logger=loggers or False, callbacks=callbacks,
                       default_root_dir=str(out_dir))


def make_loggers(cfg: DictConfig, **overrides) -> list:
    return [instantiate(c, **overrides) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]


def throughput(t: pl.Trainer) -> float | None:
    """Train examples/s of the last fit (None when it trained no batch, e.g. resumed after its last epoch)."""
    value = t.callback_metrics.get(Throughput.key)
    return None if value is None else round(float(value), 1)


def evaluate(cfg: DictConfig, fitted: pl.Trainer, system: ClassifierSystem, dm: TaskDataModule) -> dict:
    """Dev metrics of ``system`` with one device per process, so that DDP's sampler duplicates no example and no logger
    is touched. Under ``strategy=ddp`` every rank scores the whole dev set on its own device and the metric sync
    across ranks leaves the values unchanged."""
    device = fitted.strategy.root_device
    devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    t = pl.Trainer(accelerator=cfg.trainer.accelerator, devices=devices, precision=cfg.trainer.precision, logger=False,
                   enable_checkpointing=False, enable_model_summary=False,
                   enable_progress_bar=cfg.trainer.enable_progress_bar)
    merged = {}
    for r in t.validate(system, datamodule=dm, verbose=False):
        merged.update({k.split("/dataloader_idx")[0]: float(v) for k, v in r.items()})
    return dict(sorted(merged.items()))


def fit_and_evaluate(cfg: DictConfig, t: pl.Trainer, system: ClassifierSystem, dm: TaskDataModule,
                     ckpt_path: str | None) -> dict:
    """Fit, load the best dev checkpoint (if any), and return its dev metrics."""
    dm.setup("fit")  # here, not only in spawned DDP workers, so the caller can count examples
    t.fit(system, datamodule=dm, ckpt_path=ckpt_path)
    best = t.checkpoint_callback.best_model_path if t.checkpoint_callback else ""
    if best:
        log.info("Evaluating the best dev checkpoint %s", best)
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        missing, unexpected = system.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("teachers.")]  # teachers are never checkpointed
        if missing or unexpected:
            raise RuntimeError(f"{best} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return evaluate(cfg, t, system, dm)


def plot_run(t: pl.Trainer, out: Path) -> None:
    """``curves.png`` in ``out`` from the run's CSV log, when it has one."""
    for logger in t.loggers:
        if isinstance(logger, CSVLogger) and Path(logger.log_dir, "metrics.csv").is_file():
            log.info("Training curves: %s", plot_curves(Path(logger.log_dir, "metrics.csv"), out / "curves.png"))


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def teacher_dir(cfg: DictConfig, role: str) -> Path:
    return Path(cfg.paths.teachers_dir) / cfg.task.name / short_name(cfg.backbone.teachers[role])


# ----------------------------------------------------------------------------------------------------- stages
def finetune_teacher(cfg: DictConfig, spec: TaskSpec, role: str, loggers: list, ckpt_path: str | None = None) -> dict:
    """Fine-tune the ``role`` teacher (base/large) on the task and store it with its dev metrics."""
    name = cfg.backbone.teachers[role]
    out = teacher_dir(cfg, role)
    hp = cfg.finetune
    log.info("Fine-tuning teacher %s on %s -> %s", name, spec.name, out)
    pl.seed_everything(cfg.seed, workers=True)  # each model starts from the same seed, trained before or not
    start = time.time()
    model = load_classifier(name, spec.num_labels, spec.labels)
    tokenizer = load_tokenizer(name)
    dm = datamodule(cfg, spec, {role: tokenizer}, hp.batch_size)
    system = FineTuneSystem(model, role, list(spec.metrics), dm.dev_splits, spec.num_labels,
                            lr=hp.lr, weight_decay=hp.weight_decay, warmup_ratio=hp.warmup_ratio)
    run_dir = teacher_run_dir(cfg, role)
    t = trainer(cfg, run_dir, hp.epochs, loggers, ckpt_path)
    dev = fit_and_evaluate(cfg, t, system, dm, ckpt_path)
    if t.is_global_zero:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        write_json(out / "metrics.json", {
            "model": name, "task": spec.name, "dev": dev, "seed": cfg.seed, "recipe": teacher_recipe(cfg),
            "train_examples": len(dm.datasets["train"]), "wall_time_s": round(time.time() - start, 1),
            "train_examples_per_s": throughput(t),
        })
        plot_run(t, run_dir)
    t.strategy.barrier()  # other DDP ranks load the stored teacher next
    finish_wandb()
    log.info("Teacher %s stored in %s: %s", short_name(name), out, dev)
    return {"dir": str(out), "dev": dev}


def teacher_run_dir(cfg: DictConfig, role: str) -> Path:
    return Path(cfg.paths.output_dir) / f"teacher-{role}"


def teacher_recipe(cfg: DictConfig) -> dict:
    """What a stored teacher was trained with and on; compared on reuse (not the seed: seeds vary students)."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    task = {k: v for k, v in task.items() if k not in ("kd_loss", "dev_limit")}
    return {**OmegaConf.to_container(cfg.finetune, resolve=True), "task": task, "subset_seed": cfg.data.subset_seed,
            "max_seq_length": cfg.data.max_seq_length}


def ensure_teacher(cfg: DictConfig, spec: TaskSpec, role: str) -> dict:
    out = teacher_dir(cfg, role)
    if (out / "metrics.json").is_file():
        stored = json.loads((out / "metrics.json").read_text())
        recipe = stored.get("recipe", {})
        changed = {k: (recipe.get(k), v) for k, v in teacher_recipe(cfg).items() if recipe.get(k) != v}
        if changed:
            log.warning("Reusing the %s teacher in %s, trained with other settings (stored, now): %s. "
                        "Run stage=teacher to retrain it, or set paths.teachers_dir to keep both.", role, out,
                        changed if recipe else "not recorded")
        log.info("Using the fine-tuned %s teacher in %s (dev %s)", role, out, stored["dev"])
        return {"dir": str(out), "dev": stored["dev"]}
    log.warning("No fine-tuned %s teacher for %s at %s: fine-tuning it first (stage=teacher).", role, spec.name, out)
    return finetune_teacher(cfg, spec, role, [CSVLogger(teacher_run_dir(cfg, role), name="csv", version="")])


def build_student(cfg: DictConfig, spec: TaskSpec):
    s = cfg.backbone.student
    model = load_classifier(s.name_or_path, spec.num_labels, spec.labels)
    if s.layers is not None:
        truncate(model, OmegaConf.to_object(s.layers) if OmegaConf.is_list(s.layers) else int(s.layers))
    return model, load_tokenizer(s.name_or_path)


def distill(cfg: DictConfig, spec: TaskSpec) -> dict:
    """Static (and, through the strategy groups, dynamic) KD of the student from the selected teacher(s)."""
    sampler, adoption, objective, weighting = (instantiate(cfg[g]) for g in ("sampler", "adoption", "objective",
                                                                             "weighting"))
    adoption.check(list(cfg.teacher.names))  # before any teacher is fine-tuned for a run that cannot start
    objective.check(spec.num_labels)
    teachers_info = {role: ensure_teacher(cfg, spec, role) for role in cfg.teacher.names}
    teachers = {role: load_classifier(info["dir"], spec.num_labels) for role, info in teachers_info.items()}
    pl.seed_everything(cfg.seed, workers=True)  # the same student head and data order, teacher trained now or not
    student, tokenizer = build_student(cfg, spec)
    tokenizers = {"student": tokenizer, **{role: load_tokenizer(info["dir"]) for role, info in teachers_info.items()}}
    log.info("Student %s: %d layers, %.1fM parameters; teachers %s", short_name(cfg.backbone.student.name_or_path),
             student.config.num_hidden_layers, count_parameters(student) / 1e6,
             {r: f"{count_parameters(m) / 1e6:.1f}M" for r, m in teachers.items()})
    hp = cfg.distill
    dm = datamodule(cfg, spec, tokenizers, hp.batch_size)
    system = DistillSystem(
        student, teachers, sampler, adoption, objective, weighting, metrics=list(spec.metrics),
        dev_splits=dm.dev_splits, num_labels=spec.num_labels, lr=hp.lr, weight_decay=hp.weight_decay,
        warmup_ratio=hp.warmup_ratio,
    )
    out = Path(cfg.paths.output_dir)
    t = trainer(cfg, out, hp.epochs, make_loggers(cfg), cfg.ckpt_path)
    start = time.time()
    dev = fit_and_evaluate(cfg, t, system, dm, cfg.ckpt_path)
    export = out / "student"
    if t.is_global_zero:
        student.save_pretrained(export)
        tokenizer.save_pretrained(export)
        plot_run(t, out)
    return {"dev": dev, "teachers": teachers_info, "student_dir": str(export),
            "wall_time_s": round(time.time() - start, 1), "train_examples_per_s": throughput(t),
            "train_examples": len(dm.datasets["train"])}


def summary(result: dict) -> str:
    fmt = lambda d: ", ".join(f"{k} {v:.4f}" for k, v in d.items())  # noqa: E731
    lines = [f"teacher {role} ({Path(t['dir']).name}) dev: {fmt(t['dev'])}" for role, t in result["teachers"].items()]
    if "student_dir" in result:
        lines += [f"student dev: {fmt(result['dev'])}", f"student exported to {result['student_dir']}"]
    return "\n".join(lines)


@task_wrapper
def run(cfg: DictConfig) -> float | None:
    """Entry point of ``train.py``: runs ``cfg.stage``, writes ``metrics.json``, returns ``cfg.optimized_metric``."""
    quiet_libraries()
    spec = task_spec(cfg)
    start = time.time()
    if cfg.stage.name == "teacher":
        if cfg.ckpt_path and len(cfg.teacher.names) > 1:
            raise UserError("ckpt_path resumes one model: with stage=teacher pick teacher=base or teacher=large.")
        result = {"teachers": {
            role: finetune_teacher(cfg, spec, role, make_loggers(cfg, save_dir=str(teacher_run_dir(cfg, role))),
                                   cfg.ckpt_path)
            for role in cfg.teacher.names
        }}
        result["dev"] = next(iter(result["teachers"].values()))["dev"]
    else:
        result = distill(cfg, spec)
    result.update(stage=cfg.stage.name, task=spec.name, seed=cfg.seed, total_wall_time_s=round(time.time() - start, 1),
                  config=OmegaConf.to_container(cfg, resolve=True))
    if rank_zero_only.rank == 0:  # under strategy=ddp every rank runs this script
        write_json(Path(cfg.paths.output_dir) / "metrics.json", result)
        print(summary(result), f"\nmetrics: {Path(cfg.paths.output_dir) / 'metrics.json'}", flush=True)
    metric = cfg.get("optimized_metric")
    return result["dev"].get(metric) if metric else None
