"""The two stages as functions of the composed config: fine-tune teacher(s), distil a student. Orchestration only:
the checks before any work (dkd.preflight), the teacher store (dkd.teachers) and the Trainer (dkd.trainer) live in
their own modules."""
from __future__ import annotations

import functools
import json
import logging
import signal
import time
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from dkd.cache import summary as cache_summary
from dkd.cache import teacher_outputs
from dkd.callbacks import Throughput
from dkd.cpu import cpu_threads, kernels
from dkd.data import TaskDataModule, subsample
from dkd.errors import UserError
from dkd.files import write_json
from dkd.flops import summary as flops_summary
from dkd.jobs import requeue
from dkd.loggers import CSVLog, finish_wandb, plot_curves
from dkd.metrics import describe
from dkd.models import count_parameters, load_classifier, load_tokenizer, short_name, truncate, weights_digest
from dkd.module import ClassifierSystem, DistillSystem, FineTuneSystem
from dkd.preflight import Plan, check
from dkd.provenance import code_version, invocation
from dkd.quiet import quiet_libraries
from dkd.ship.card import write_card
from dkd.ship.compress import compress
from dkd.teachers import TeacherSource, TeacherStore, agree
from dkd.trainer import best_checkpoint, build_trainer, remove_resumable, stage_checkpoints

log = logging.getLogger(__name__)


def task_wrapper(fn):
    """Logs a failure with its config's output dir and the checkpoint to resume from, if one was saved, and always
    closes the loggers (one W&B run per multirun job). A run stopped by SIGTERM exits with 143, not with the 0 of
    Lightning's ``SIGTERMException``: it did not finish."""

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig):
        start = time.time()
        try:
            with requeue.installed(cfg.paths.output_dir, OmegaConf.to_container(cfg, resolve=True)):
                try:
                    return fn(cfg)
                except (SIGTERMException, requeue.Preempted) as err:
                    log.warning("Run stopped by %s; its output dir is %s", err.__class__.__name__,
                                cfg.paths.output_dir)
                    for hint in resume_hints(cfg, since=start):
                        log.warning("%s", hint)
                    if rank_zero_only.rank == 0:
                        finish_wandb(preempting=True)
                        requeue.requeue(Path(cfg.paths.output_dir))  # under a scheduler: requeued, does not return
                    raise SystemExit(128 + signal.SIGTERM) from err
        except UserError:
            raise  # train.py reports it as one message
        except SystemExit:
            raise
        except BaseException:
            log.exception("Run failed; its output dir is %s", cfg.paths.output_dir)
            for hint in resume_hints(cfg, since=start):
                log.error("%s", hint)
            raise
        finally:
            finish_wandb()

    return wrapped


def resume_hints(cfg: DictConfig, since: float) -> list[str]:
    """How to resume from the interruption checkpoints this run wrote (not older ones lying in the same folders)."""
    folders = [Path(cfg.paths.output_dir)] + ([Path(cfg.ckpt_path).parent] if cfg.get("ckpt_path") else [])
    hints = []
    for ckpt in sorted({c for f in folders for c in f.glob("**/on_exception.ckpt") if c.stat().st_mtime >= since}):
        stage = ckpt.parent.parent.name
        if stage.startswith("teacher-"):  # a teacher's fine-tuning inside a distillation run
            hints.append(f"Resume the teacher's fine-tuning with the same options plus stage=teacher "
                         f"teacher={stage.removeprefix('teacher-')} ckpt_path={ckpt}, then run again to distil")
        else:
            hints.append(f"Resume it with the same options plus ckpt_path={ckpt}")
    return hints


# ------------------------------------------------------------------------------------------------ building blocks
def datamodule(cfg: DictConfig, plan: Plan, tokenizers: dict, batch_size: int, train_limit: int | None = None
               ) -> TaskDataModule:
    """``train_limit``: a fixed random subset of the training split (``data.subset_seed``), for this stage only."""
    splits = {**plan.splits, "train": subsample(plan.splits["train"], train_limit, cfg.data.subset_seed)}
    return TaskDataModule(
        plan.spec, splits, tokenizers, max_seq_length=cfg.data.max_seq_length, batch_size=batch_size,
        eval_batch_size=cfg.data.eval_batch_size, seed=cfg.seed, cache_dir=cfg.data.cache_dir,
        num_workers=cfg.data.num_workers, padding=cfg.data.padding,
    )


def make_loggers(cfg: DictConfig, **overrides) -> list:
    return [instantiate(c, **overrides) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]


def throughput(logged: dict) -> float | None:
    """Train examples/s of the last fit (None when it trained no batch, e.g. resumed after its last epoch)."""
    value = logged.get(Throughput.key)
    return None if value is None else round(float(value), 1)


def evaluate(cfg: DictConfig, fitted: pl.Trainer, system: ClassifierSystem, dm: TaskDataModule) -> dict:
    """Dev metrics of ``system`` with one device per process, so that DDP's sharding duplicates no example and no
    logger is touched. Under ``strategy=ddp`` every rank scores the whole dev set on its own device and the metric
    sync across ranks leaves the values unchanged."""
    device = fitted.strategy.root_device
    devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    t = pl.Trainer(accelerator=cfg.trainer.accelerator, devices=devices, precision=cfg.trainer.precision, logger=False,
                   enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                   enable_progress_bar=cfg.trainer.enable_progress_bar)
    merged = {}
    for r in t.validate(system, datamodule=dm, verbose=False):
        merged.update({k.split("/dataloader_idx")[0]: float(v) for k, v in r.items()})
    return dict(sorted(merged.items()))


def predicted_classes(system: ClassifierSystem, who: str) -> dict[str, int] | None:
    """How many classes the model predicted on each dev split in its last evaluation, with a warning for one: a
    collapsed model's accuracy is the majority class's share, not a method's result."""
    classes = system.predicted_classes
    for split, count in (classes or {}).items():
        if count == 1:
            log.warning("The %s predicts one class for every %s example: it has collapsed (its score is that class's "
                        "share). metrics.json records it under predicted_classes; a study counts it per variant.",
                        who, split)
    return classes


def fit_and_evaluate(cfg: DictConfig, t: pl.Trainer, system: ClassifierSystem, dm: TaskDataModule,
                     ckpt_path: str | None, stage: str) -> tuple[dict, str, dict]:
    """Fit, load the best dev checkpoint (the last epoch's model when checkpointing is off), and return its dev
    metrics, which model that is, and the numbers the fit logged. A stage whose fit an earlier attempt of the job
    ended (early stopping, or its last epoch) resumes here at the evaluation, with that fit's checkpoints and numbers:
    resumed into ``fit``, it would train more epochs."""
    dm.setup("fit")  # here, not only in spawned DDP workers, so the caller can count examples
    ended = requeue.fit_ended(stage)
    if ended and not (Path(ended["best"]).is_file() if ended["best"] else ckpt_path):
        log.warning("The fit of %s ended in an earlier attempt, but the checkpoint of its model is gone: the stage "
                    "trains again from its start", stage)
        ended, ckpt_path = None, None
    if ended:
        log.warning("The fit of %s ended in an earlier attempt (epoch %d): its model is evaluated, no epoch is added",
                    stage, ended["epoch"])
        best, epoch, logged = ended["best"], ended["epoch"], ended["metrics"]
    else:
        with requeue.fitting():
            try:
                t.fit(system, datamodule=dm, ckpt_path=ckpt_path)
            finally:  # over (last epoch, early stopping) even when a stop came during its last validation
                if t.fit_loop.done:
                    requeue.record_fit_end(*fit_result(t))
        logged, best, epoch = fit_result(t)
    if best:
        log.info("Evaluating the best dev checkpoint %s", best)
        load_weights(system, best)
        selected = f"checkpoint {best}"
    else:
        log.info("No checkpoint selects by the dev score (trainer.enable_checkpointing=false or no "
                 "callbacks.model_checkpoint): keeping the model of the last epoch (%d)", epoch)
        if ended:
            load_weights(system, ckpt_path)  # the last epoch's model, from the fit's last checkpoint
        selected = f"last epoch ({epoch}), no best-checkpoint selection"
    return evaluate(cfg, t, system, dm), selected, logged


def fit_result(t: pl.Trainer) -> tuple[dict, str, int]:
    """What a finished fit logged (numbers), its best dev checkpoint ("" without one) and its last epoch."""
    selector = best_checkpoint(t)
    logged = {k: float(v) for k, v in t.callback_metrics.items()}
    return logged, (selector.best_model_path if selector else ""), t.current_epoch - 1


def load_weights(system: ClassifierSystem, path: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = system.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("teachers.")]  # teachers are never checkpointed
    if missing or unexpected:
        raise RuntimeError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def tidy_checkpoints(cfg: DictConfig, t: pl.Trainer, since: float, ckpt_path: str | None) -> None:
    """After a stage's results are saved (teacher stored, student exported): its resume points go (the one it
    resumed from, ``ckpt_path``, too), unless ``keep_last_ckpt``."""
    if not cfg.keep_last_ckpt:
        for path in remove_resumable(t, since, ckpt_path):
            log.info("Removed %s: the stage ended well (keep_last_ckpt=true keeps it)", path)


def remove_leftovers(cfg: DictConfig, out: Path) -> None:
    """The resume points an attempt left behind once its results were written (the trainer that would name them is
    gone): ``last.ckpt`` and ``on_exception.ckpt`` of the run's checkpoint folder, unless ``keep_last_ckpt``."""
    if cfg.keep_last_ckpt or rank_zero_only.rank != 0:
        return
    for path in (out / "checkpoints" / "last.ckpt", out / "checkpoints" / "on_exception.ckpt"):
        if path.is_file():
            path.unlink()
            log.info("Removed %s: the run's results are written (keep_last_ckpt=true keeps it)", path)


def plot_run(t: pl.Trainer, out: Path) -> None:
    """``curves.png`` in ``out`` from the run's CSV log, when it has one."""
    for logger in t.loggers:
        if isinstance(logger, CSVLogger) and Path(logger.log_dir, "metrics.csv").is_file():
            log.info("Training curves: %s", plot_curves(Path(logger.log_dir, "metrics.csv"), out / "curves.png"))


def teacher_run_dir(cfg: DictConfig, role: str) -> Path:
    return Path(cfg.paths.output_dir) / f"teacher-{role}"


def stored_teacher(source: TeacherSource) -> dict:
    metrics = source.folder / "metrics.json"
    dev = json.loads(metrics.read_text()).get("dev", {}) if metrics.is_file() else {}
    return {"dir": str(source.folder), "dev": dev, "source": "store" if source.recipe else "teacher.dirs"}


# ----------------------------------------------------------------------------------------------------- stages
def finetune_teacher(cfg: DictConfig, plan: Plan, source: TeacherSource, loggers: list,
                     ckpt_path: str | None = None) -> dict:
    """Fine-tune the ``source.role`` teacher on the task into the teacher store, under its lock; a run that waited for
    the lock finds the teacher stored by the other run and reuses it. A requeued job resumes the fine-tuning its
    earlier attempt was in."""
    store = TeacherStore(cfg.paths.teachers_dir)
    name, run_dir = f"teacher-{source.role}", teacher_run_dir(cfg, source.role)
    ckpt_path = requeue.resume_from(name, ckpt_path)
    with store.building(source.folder), requeue.stage(name, stage_checkpoints(run_dir, ckpt_path)):
        if agree(source.ready):
            log.info("The %s teacher was stored meanwhile by another run: %s", source.role, source.folder)
            return stored_teacher(source)
        log.info("Fine-tuning the %s teacher %s on %s -> %s", source.role, source.model, plan.spec.name, source.folder)
        pl.seed_everything(cfg.finetune.seed, workers=True)  # the recipe's seed: a sweep's teacher is the same teacher
        start = time.time()
        spec, hp = plan.spec, cfg.finetune
        model = load_classifier(source.model, spec.num_labels, spec.labels)
        tokenizer = load_tokenizer(source.model)
        dm = datamodule(cfg, plan, {source.role: tokenizer}, hp.batch_size)
        system = FineTuneSystem(model, source.role, list(spec.metrics), dm.dev_splits, spec.num_labels,
                                lr=hp.lr, weight_decay=hp.weight_decay, warmup_ratio=hp.warmup_ratio,
                                warmup_rounding=hp.warmup_rounding, adamw=hp.adamw)
        t = build_trainer(cfg, run_dir, hp.epochs, loggers, ckpt_path)
        dev, selected, logged = fit_and_evaluate(cfg, t, system, dm, ckpt_path, name)
        if t.is_global_zero:
            staging = store.staging(source.folder)
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            store.publish(staging, source.folder, source.recipe, {
                "model": source.model, "task": spec.name, "dev": dev, "seed": cfg.finetune.seed, "selected": selected,
                "predicted_classes": predicted_classes(system, f"{source.role} teacher"),
                "train_examples": len(dm.datasets["train"]), "wall_time_s": round(time.time() - start, 1),
                "train_examples_per_s": throughput(logged), "run_dir": str(run_dir), "kernels": kernels(),
            })
            plot_run(t, run_dir)
        t.strategy.barrier()  # other DDP ranks load the stored teacher next
        requeue.completed(name)  # stored: a marker pointing into this stage points nowhere now
        tidy_checkpoints(cfg, t, start, ckpt_path)
    finish_wandb()
    log.info("Teacher %s stored in %s: %s", short_name(source.model), source.folder, dev)
    return {"dir": str(source.folder), "dev": dev, "source": "store (fine-tuned now)"}


def ensure_teacher(cfg: DictConfig, plan: Plan, source: TeacherSource, loggers: list | None = None,
                   ckpt_path: str | None = None) -> dict:
    """The stored teacher of ``source``'s recipe, fine-tuned first when there is none (``loggers``: those of the
    fine-tuning; a CSV log in the run's ``teacher-<role>`` folder when not given): its folder, dev scores, source and
    ``weights``, the sha256 of its weights (:func:`dkd.models.weights_digest`)."""
    if agree(source.ready):
        info = stored_teacher(source)
        log.info("The %s teacher for this recipe is already stored in %s (dev %s); delete the folder to fine-tune it "
                 "again.", source.role, source.folder, info["dev"])
    else:
        log.info("No %s teacher is stored for this recipe: fine-tuning it first", source.role)
        for folder, keys in TeacherStore(cfg.paths.teachers_dir).differences(source.recipe).items():
            log.info("  stored %s differs in %s (to use it anyway: teacher.dirs.%s=%s)", folder, ", ".join(keys),
                     source.role, folder)
        if loggers is None:
            loggers = [CSVLog(teacher_run_dir(cfg, source.role), name="csv", version="")]
        info = finetune_teacher(cfg, plan, source, loggers, ckpt_path)
    # a refit elsewhere keeps its folder name and may keep its dev score: a study tells two teachers apart by this
    return {**info, "weights": weights_digest(info["dir"])}


def build_student(cfg: DictConfig, spec):
    s = cfg.backbone.student
    model = load_classifier(s.name_or_path, spec.num_labels, spec.labels)
    if s.layers is not None:
        truncate(model, OmegaConf.to_object(s.layers) if OmegaConf.is_list(s.layers) else int(s.layers))
    return model, load_tokenizer(s.name_or_path)


def distill(cfg: DictConfig, plan: Plan) -> tuple[Callable[[], None], dict]:
    """Static (and, through the strategy groups, dynamic) KD of the student from the selected teacher(s); returns
    what tidies its checkpoints (once its results are saved) and its results."""
    spec = plan.spec
    teachers_info = {role: ensure_teacher(cfg, plan, source) for role, source in plan.teachers.items()}
    teachers = {role: load_classifier(info["dir"], spec.num_labels) for role, info in teachers_info.items()}
    pl.seed_everything(cfg.seed, workers=True)  # the same student head and data order, teacher trained now or not
    student, tokenizer = build_student(cfg, spec)
    tokenizers = {"student": tokenizer, **{role: load_tokenizer(info["dir"]) for role, info in teachers_info.items()}}
    log.info("Student %s: %d layers, %.1fM parameters; teachers %s", short_name(cfg.backbone.student.name_or_path),
             student.config.num_hidden_layers, count_parameters(student) / 1e6,
             {r: f"{count_parameters(m) / 1e6:.1f}M" for r, m in teachers.items()})
    hp = cfg.distill
    dm = datamodule(cfg, plan, tokenizers, hp.batch_size * plan.strategies["sampler"].pool,  # pool · B rows a step
                    hp.train_limit)
    dm.setup("fit")
    objective = plan.strategies["objective"]
    hidden = None
    if objective.needs_hidden_states:  # after seeding: the projections between hidden sizes start random
        objective.setup(student.config, {r: t.config for r, t in teachers.items()})
        hidden = {role: objective.teacher_request(role) for role in teachers}
    outputs = teacher_outputs(plan.teacher_cache, teachers, {r: i["dir"] for r, i in teachers_info.items()},
                              dm.datasets["train"].encodings, cfg.paths.cache_dir, cfg.trainer.precision, hidden)
    system = DistillSystem(
        student, teachers, **plan.strategies, teacher_dropout=hp.teacher_dropout, teacher_outputs=outputs,
        keep_width=cfg.data.padding == "max_length", scope=hp.scope, metrics=list(spec.metrics),
        dev_splits=dm.dev_splits, num_labels=spec.num_labels, lr=hp.lr, weight_decay=hp.weight_decay,
        warmup_ratio=hp.warmup_ratio, warmup_rounding=hp.warmup_rounding, adamw=hp.adamw,
    )
    out = Path(cfg.paths.output_dir)
    ckpt_path = requeue.resume_from("distill", cfg.ckpt_path)
    t = build_trainer(cfg, out, hp.epochs, make_loggers(cfg), ckpt_path)
    start = time.time()
    with requeue.stage("distill", stage_checkpoints(out, ckpt_path)):  # until exported: a stop resumes from here
        dev, selected, logged = fit_and_evaluate(cfg, t, system, dm, ckpt_path, "distill")
        cache = cache_summary(plan.teacher_cache, outputs, logged)
        for role, c in cache.items():
            log.info("Teacher-output cache (%s) of the %s teacher: %s hits, %s misses%s", c["mode"], role,
                     c["hits"], c["misses"], f"; {c['folder']}" if c["folder"] else "")
        export = out / "student"
        if t.is_global_zero:
            student.save_pretrained(export)
            tokenizer.save_pretrained(export)
            plot_run(t, out)
    requeue.finishing()  # the student is exported: a requeue signal from now on lets the job end
    # the checkpoints go once metrics.json is written (run()): a job killed in between resumes at the evaluation
    cleanup = functools.partial(tidy_checkpoints, cfg, t, start, ckpt_path)
    return cleanup, {"dev": dev, "selected": selected, "predicted_classes": predicted_classes(system, "student"),
            "teachers": teachers_info, "student_dir": str(export),
            "wall_time_s": round(time.time() - start, 1), "train_examples_per_s": throughput(logged),
            "train_examples": len(dm.datasets["train"]), "pool_examples": len(plan.splits["train"].labels),
            "flops": flops_summary(logged),
            "decisions": {k.removeprefix("mean/"): round(float(v), 4) for k, v in logged.items()
                          if k.startswith("mean/")},
            "teacher_cache": cache,
            **({"layer_map": {r: [list(p) for p in m] for r, m in objective.maps.items()}} if hidden else {})}


def summary(result: dict) -> str:
    lines = [f"teacher {role} ({Path(t['dir']).name}) dev: {describe(t['dev'])}"
             for role, t in result["teachers"].items()]
    if "student_dir" in result:
        one = [split for split, n in (result.get("predicted_classes") or {}).items() if n == 1]
        lines += [f"student dev: {describe(result['dev'])} ({result['selected']})"
                  + (f"; COLLAPSED: one class predicted on {', '.join(one)}" if one else ""),
                  f"student exported to {result['student_dir']}"]
    return "\n".join(lines)


def card(out: Path, plan: Plan) -> None:
    """The student's model card; its failure is logged, not raised: the run's results stand."""
    dev = plan.splits[next(iter(plan.spec.dev_files))]
    try:
        print(f"model card: {write_card(out, example=[column[0] for column in dev.texts])}", flush=True)
    except Exception:  # noqa: BLE001 - any failure of the card
        log.exception("The model card failed; the run's results stand. Write it later with "
                      "python -m dkd.ship.card %s", out)


def report(out: Path, c: DictConfig) -> None:
    """The compression report of a finished run; its failure is logged, not raised: the run's results stand (and a
    sweeper still gets its metric)."""
    try:
        compress(out, batch_sizes=list(c.batch_sizes), repeats=c.repeats, warmup=c.warmup, threads=c.threads,
                 onnx=c.onnx, tolerance=c.tolerance)
        print(f"compression report: {out / 'compression.md'}", flush=True)
    except Exception:  # noqa: BLE001 - any failure of the report
        log.exception("The compression report failed; the run's results stand. Write it later with "
                      "python -m dkd.ship.compress %s (or compress.enabled=false)", out)


@task_wrapper
def run(cfg: DictConfig) -> float | None:
    """Entry point of ``train.py``: checks the run, runs ``cfg.stage``, writes ``metrics.json``, returns
    ``cfg.optimized_metric``."""
    quiet_libraries()
    start = time.time()
    plan = check(cfg)
    checked_s = round(time.time() - start, 1)
    out = Path(cfg.paths.output_dir)
    cleanup = None
    earlier = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else None
    if requeue.resuming() and earlier and requeue.same_config(earlier.get("config") or {}):
        # an earlier attempt wrote its results, then was stopped: only what follows them is left to do
        log.warning("Attempt %d of this job: its results were written by an earlier attempt (%s); what follows them "
                    "runs now", requeue.attempts(), out / "metrics.json")
        result = earlier
        requeue.finishing()
        cleanup = functools.partial(remove_leftovers, cfg, out)
    else:
        with cpu_threads(cfg.get("threads")):
            if cfg.stage.name == "teacher":
                result = {"teachers": {
                    role: ensure_teacher(cfg, plan, source,
                                         make_loggers(cfg, save_dir=str(teacher_run_dir(cfg, role))), cfg.ckpt_path)
                    for role, source in plan.teachers.items()
                }}
                result["dev"] = next(iter(result["teachers"].values()))["dev"]
            else:
                cleanup, result = distill(cfg, plan)
        result.update(stage=cfg.stage.name, task=plan.spec.name, seed=cfg.seed, data=plan.data_id,
                      checked_in_s=checked_s, total_wall_time_s=round(time.time() - start, 1),
                      attempts=requeue.attempts(), code=code_version(), kernels=kernels(), **invocation(),
                      config=OmegaConf.to_container(cfg, resolve=True))
    if rank_zero_only.rank == 0:  # under strategy=ddp every rank runs this script
        # the results first, whole; then the checkpoints they make useless go, then the marker
        write_json(out / "metrics.json", result)
    if cleanup is not None:
        cleanup()
    if rank_zero_only.rank == 0:
        print(summary(result), f"\nmetrics: {out / 'metrics.json'}", flush=True)
        if cfg.stage.name == "distill":
            card(out, plan)
        if cfg.stage.name == "distill" and cfg.compress.enabled:
            if requeue.pending():
                log.warning("The compression report is skipped: the job was asked to stop. Write it later with "
                            "python -m dkd.ship.compress %s", out)
            else:
                report(out, cfg.compress)
        requeue.clear_marker(out)  # last: a job killed during the card or the report redoes them, not the run
    metric = cfg.get("optimized_metric")
    return result["dev"].get(metric) if metric else None
