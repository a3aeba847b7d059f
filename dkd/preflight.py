"""Check a run before any expensive work, so that a typo costs seconds, not a teacher fine-tuning.

Checked, in this order: numbers and paths in the config, the task, the resume checkpoint, the optimised metric,
the loggers, the Trainer with its callbacks, the strategy combination, the task's data (read, validated, cut to its
limits), the student (config, tokenizer, weights, layer choice, position limit) and where each teacher comes from
(stored for this recipe, to be fine-tuned from a model that loads, or a given folder), and the hidden-state
layer map against their depths and tokenizers. Nothing is trained and no
weights are loaded; what was read (the data) is handed on in the :class:`Plan`.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from dkd.cache import resolve_mode
from dkd.cpu import native_bf16
from dkd.data import PADDING, Split, fingerprint, load_task_data
from dkd.errors import UserError, one_line
from dkd.global_batch import SCOPES
from dkd.models import check_layers, inspect_model, load_config, same_tokenizer, short_name
from dkd.module import ADAMW
from dkd.strategies.samplers import MostUncertain
from dkd.tasks import TaskSpec, task_spec
from dkd.teachers import TeacherSource, TeacherStore, recipe
from dkd.trainer import build_trainer

log = logging.getLogger(__name__)

STRATEGY_GROUPS = ("sampler", "adoption", "objective", "weighting")


@dataclass
class Plan:
    """A checked run: the task, its data, where each teacher comes from, and the strategies (``stage=distill``)."""

    spec: TaskSpec
    splits: dict[str, Split]
    data_id: str
    teachers: dict[str, TeacherSource]
    strategies: dict[str, object]
    teacher_cache: str = "off"


def _number(minimum: float, integer: bool = False, optional: bool = False, below: float | None = None):
    def ok(v) -> bool:
        if v is None:
            return optional
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            return False
        return v >= minimum and (below is None or v < below)

    kind = "an integer" if integer else "a number"
    upper = f" and < {below}" if below is not None else ""
    return ok, f"{kind} >= {minimum}{upper}" + (", or null" if optional else "")


def _positive():
    return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), "a number > 0"


RULES = {
    **{f"{stage}.lr": _positive() for stage in ("finetune", "distill")},
    **{f"{stage}.epochs": _number(1, integer=True) for stage in ("finetune", "distill")},
    **{f"{stage}.batch_size": _number(1, integer=True) for stage in ("finetune", "distill")},
    **{f"{stage}.warmup_ratio": _number(0, below=1) for stage in ("finetune", "distill")},
    **{f"{stage}.weight_decay": _number(0) for stage in ("finetune", "distill")},
    "data.max_seq_length": _number(2, integer=True),
    "data.eval_batch_size": _number(1, integer=True),
    "data.num_workers": _number(0, integer=True),
    "data.subset_seed": _number(0, integer=True),
    "task.train_limit": _number(1, integer=True, optional=True),
    "task.dev_limit": _number(1, integer=True, optional=True),
    "distill.train_limit": _number(1, integer=True, optional=True),
    "seed": _number(0, integer=True),
    "threads": _number(1, integer=True, optional=True),
    "distill.teacher_dropout": ((lambda v: isinstance(v, bool)), "true or false"),
    "keep_last_ckpt": ((lambda v: isinstance(v, bool)), "true or false"),
    "data.padding": ((lambda v: v in PADDING), f"one of {list(PADDING)}"),
    "distill.scope": ((lambda v: v in SCOPES), f"one of {list(SCOPES)}"),
    "finetune.seed": _number(0, integer=True),
    **{f"{stage}.warmup_rounding": ((lambda v: v in ("floor", "ceil")), "floor or ceil")
       for stage in ("finetune", "distill")},
    **{f"{stage}.adamw": ((lambda v: v in ADAMW), f"one of {list(ADAMW)}") for stage in ("finetune", "distill")},
    **{f"compress.{key}": ((lambda v: isinstance(v, bool)), "true or false") for key in ("enabled", "onnx")},
    "compress.repeats": _number(1, integer=True),
    "compress.warmup": _number(0, integer=True),
    "compress.threads": _number(1, integer=True, optional=True),
    "compress.tolerance": _positive(),
}


def check_compress(cfg: DictConfig) -> None:
    """The compression report after a distillation: batch sizes, and ONNX's packages when it exports to ONNX."""
    c = cfg.compress
    if not c.enabled or cfg.stage.name != "distill":
        return
    sizes = c.batch_sizes
    if not OmegaConf.is_list(sizes) or not sizes or not all(_number(1, integer=True)[0](b) for b in sizes):
        raise UserError(f"compress.batch_sizes={sizes}: a list of integers >= 1, e.g. [1,32].")
    if c.onnx:
        missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"compress.onnx=true exports the student to ONNX, but {', '.join(missing)} is not "
                            f"installed: pip install -r requirements.txt, or compress.onnx=false.")


def check_numbers(cfg: DictConfig) -> None:
    for key, (ok, wanted) in RULES.items():
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise UserError(f"{key}={value!r}: must be {wanted}.")


def check_resume(cfg: DictConfig) -> None:
    """The checkpoint exists and holds the model this stage trains (a teacher's fine-tuning cannot resume a
    distillation, nor the other way round)."""
    if not cfg.ckpt_path:
        return
    path = Path(cfg.ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such checkpoint file. Runs keep theirs in <run>/checkpoints/ "
                        f"(last.ckpt at each epoch end, on_exception.ckpt after an interruption).")
    names = list(cfg.teacher.names)
    if cfg.stage.name == "teacher" and len(names) > 1:
        raise UserError("ckpt_path resumes one model: with stage=teacher pick teacher=base or teacher=large.")
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        role = checkpoint["hyper_parameters"]["role"]
    except Exception as err:  # noqa: BLE001 - not a readable DKD checkpoint, whatever the reason
        raise UserError(f"ckpt_path={path}: not a checkpoint written by DKD ({one_line(err)}).") from err
    if "optimizer_states" not in checkpoint:
        raise UserError(f"ckpt_path={path} holds the model's weights only (the best dev checkpoint), nothing to "
                        f"resume training from: resume from <run>/checkpoints/last.ckpt or on_exception.ckpt (a run "
                        f"that ended well removes its last.ckpt unless keep_last_ckpt=true).")
    wanted = "student" if cfg.stage.name == "distill" else names[0]
    if role != wanted:
        fix = ("resume it with stage=teacher teacher=" + role if role != "student" else
               "resume it with stage=distill")
        raise UserError(f"ckpt_path={path} holds the {role + ' teacher' if role != 'student' else 'student'}'s "
                        f"training, but this run trains the {wanted if wanted == 'student' else wanted + ' teacher'}: "
                        f"{fix} (and the options it ran with).")


def check_metric(cfg: DictConfig, spec: TaskSpec) -> None:
    metric = cfg.get("optimized_metric")
    known = ["dev/score"] + [f"{split}/{m}" for split in spec.dev_files for m in spec.metrics]
    if metric and metric not in known:
        raise UserError(f"optimized_metric={metric}: task {spec.name} reports {known}.")


def check_loggers(cfg: DictConfig) -> None:
    for name, conf in (cfg.get("logger") or {}).items():
        if conf and "_target_" in conf:
            try:
                get_object(conf._target_)
            except Exception as err:  # noqa: BLE001 - any import failure is the same fix
                raise UserError(f"logger.{name}._target_={conf._target_} cannot be imported "
                                f"({one_line(err)}).") from err


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_trainer(cfg: DictConfig) -> None:
    """Build the Trainer (and its callbacks) once and throw it away: unknown keys, a missing GPU, a bad precision or
    strategy fail here."""
    if "use_distributed_sampler" in cfg.trainer:
        raise UserError("trainer.use_distributed_sampler: DKD shards the data over ranks itself (each rank's share "
                        "of the same global batches); remove the key.")
    with _quiet("pytorch_lightning.utilities.rank_zero"):  # "GPU available: …" belongs to the real Trainer
        build_trainer(cfg, Path(cfg.paths.output_dir), 1, [], cfg.ckpt_path)
    check_bf16(cfg)


def on_cpu(cfg: DictConfig) -> bool:
    return cfg.trainer.accelerator == "cpu" or (cfg.trainer.accelerator == "auto" and not torch.cuda.is_available())


# the precision study's entropy arm, bf16 − fp32 in points on SST-5 test: mean and 95% t interval over five seeds
# (docs/results.md); tests/test_docs.py recomputes them from docs/repro/precision_sst5.json
BF16_ENTROPY_ON_TEST = (-4.8, -8.4, -1.2)


def check_bf16(cfg: DictConfig) -> None:
    """Each said in one line, not refused: bf16 on a CPU without bf16 instructions runs emulated, slower than fp32;
    bf16 with a sampler that ranks rows by uncertainty was measured to lose accuracy (docs/results.md)."""
    precision = str(cfg.trainer.precision)
    if not precision.startswith("bf16"):
        return
    if on_cpu(cfg) and not native_bf16():
        log.warning("trainer.precision=%s: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 runs "
                    "emulated and slower than fp32; trainer.precision=32 is faster here", precision)
    if cfg.stage.name == "distill" and issubclass(get_object(cfg.sampler._target_), MostUncertain):
        d, low, high = BF16_ENTROPY_ON_TEST
        log.warning("trainer.precision=%s with sampler=%s: bf16 scoring ties rows of nearly equal uncertainty and "
                    "selects other rows than fp32; measured on SST-5 (entropy, r=0.1): bf16 − fp32 = %+.1f points on "
                    "test, 95%% interval [%+.1f, %+.1f] over five seeds (docs/results.md). trainer.precision=32 keeps "
                    "the selection", precision, cfg.sampler.get("measure", cfg.sampler._target_), d, low, high)


def build_strategies(cfg: DictConfig, spec: TaskSpec) -> dict[str, object]:
    strategies = {}
    for group in STRATEGY_GROUPS:
        try:
            strategies[group] = instantiate(cfg[group])
        except InstantiationException as err:
            if isinstance(err.__cause__, UserError):
                raise err.__cause__ from None
            raise UserError(f"{group} ({cfg[group].get('_target_')}): {one_line(err)}") from err
    strategies["sampler"].check(spec.num_labels, spec.name)
    strategies["adoption"].check(list(cfg.teacher.names), spec.num_labels)
    strategies["objective"].check(spec.num_labels)
    strategies["weighting"].check(strategies["objective"], spec.num_labels)
    if strategies["objective"].needs_hidden_states:
        strategies["objective"].check_weighting(strategies["weighting"])
    return strategies


def check_alignment(objective, student_model: str, student_depth: int, teachers: dict[str, TeacherSource]) -> None:
    """``objective=kd_pt``: its layer map fits the student's and each teacher's depth, and all-token alignment only
    pairs models that share a tokenizer; the map, kept on the objective for the run, is logged (a user sees which
    layers were matched)."""
    if not objective.needs_hidden_states:
        return
    where = {role: str(s.folder) if s.ready else s.model for role, s in teachers.items()}
    depths = {role: load_config(path).num_hidden_layers for role, path in where.items()}
    same = {role: objective.positions != "all" or same_tokenizer(student_model, path) for role, path in where.items()}
    for role, pairs in objective.plan(student_depth, depths, same).items():
        log.info("Hidden-state alignment with the %s teacher (%s): student ↔ teacher layers %s", role,
                 "[CLS] states" if objective.positions == "cls" else "every token",
                 ", ".join(f"{s}↔{t}" for s, t in pairs))


def teacher_sources(cfg: DictConfig, spec: TaskSpec, data_id: str) -> dict[str, TeacherSource]:
    names = list(cfg.teacher.names)
    given = {role: d for role, d in (cfg.teacher.get("dirs") or {}).items() if d}
    unused = sorted(set(given) - set(names))
    if unused:
        raise UserError(f"teacher.dirs.{unused[0]} is set, but this run's teachers are {names}.")
    if given and cfg.stage.name == "teacher":
        raise UserError("stage=teacher fine-tunes into the teacher store; teacher.dirs.* are for distillation.")
    store = TeacherStore(cfg.paths.teachers_dir)
    n, length = spec.num_labels, cfg.data.max_seq_length
    sources = {}
    for role in names:
        if role not in cfg.backbone.teachers:
            raise UserError(f"teacher={role}: backbone {cfg.backbone.name} has teachers {list(cfg.backbone.teachers)}.")
        model = cfg.backbone.teachers[role]
        if role in given:
            config = inspect_model(given[role], f"teacher.dirs.{role}", n, length, fine_tuned=True)
            check_given_task(Path(given[role]), config, spec, f"teacher.dirs.{role}")
            sources[role] = TeacherSource(role, model, Path(given[role]), None)
            continue
        try:
            r = recipe(cfg, role, spec, data_id)  # reads the model's files
        except UserError as err:
            raise UserError(f"backbone.teachers.{role}={model}: {err}") from err
        source = TeacherSource(role, model, store.folder(r), r)
        if source.ready:
            check_stored_seed(source, cfg.finetune.seed)
            inspect_model(str(source.folder), f"stored {role} teacher", n, length, fine_tuned=True)
        else:
            inspect_model(model, f"backbone.teachers.{role}", n, length)
        sources[role] = source
    return sources


def check_stored_seed(source: TeacherSource, seed: int) -> None:
    """A teacher stored before ``finetune.seed`` existed was fine-tuned under the seed of the job that came first; at
    42 its key is this recipe's, so its own record decides whether it is this recipe's teacher."""
    stored = json.loads((source.folder / "metrics.json").read_text()).get("seed")
    if stored is not None and stored != seed:
        raise UserError(f"The stored {source.role} teacher {source.folder} was fine-tuned under seed {stored} (by the "
                        f"job that came first, before finetune.seed existed), but its recipe asks for "
                        f"finetune.seed={seed}. Delete that folder to fine-tune it at seed {seed}, or use it as it is "
                        f"with teacher.dirs.{source.role}={source.folder}.")


def check_given_task(folder: Path, config, spec: TaskSpec, option: str) -> None:
    """A given teacher must be one of this task: by its recipe when the store wrote it, else by its label names."""
    recipe_file = folder / "recipe.json"
    if recipe_file.is_file():
        task = json.loads(recipe_file.read_text()).get("task")
        if task != spec.name:
            raise UserError(f"{option}={folder} was fine-tuned on {task}, not {spec.name}.")
        return
    names = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
    generic = [f"LABEL_{i}" for i in range(len(names))]
    if spec.labels and names != generic and names != list(spec.labels):
        raise UserError(f"{option}={folder} predicts the labels {names}, but task {spec.name} has {list(spec.labels)}.")


def check(cfg: DictConfig) -> Plan:
    """Everything the run needs, checked; raises :class:`UserError` naming the option, file or value at fault."""
    start = time.perf_counter()
    check_numbers(cfg)
    teacher_cache = resolve_mode(cfg.distill.teacher_cache, cfg.distill.teacher_dropout)
    spec = task_spec(cfg)
    check_resume(cfg)
    check_metric(cfg, spec)
    check_loggers(cfg)
    check_trainer(cfg)
    check_compress(cfg)
    distilling = cfg.stage.name == "distill"
    strategies = build_strategies(cfg, spec) if distilling else {}
    custom = {"train": cfg.task.train_file, "dev": cfg.task.dev_file} if spec.name == "custom" else None
    splits = load_task_data(spec, cfg.task.get("data_dir"), custom, cfg.task.train_limit, cfg.task.dev_limit,
                            cfg.data.subset_seed)
    data_id = fingerprint(splits, spec.labels)
    subset, rows = cfg.distill.train_limit, len(splits["train"].labels)
    if distilling and subset is not None and subset > rows:
        raise UserError(f"distill.train_limit={subset} is more than the {rows} training rows of {spec.name}: give at "
                        f"most {rows}, or null to distil on all of them.")
    if distilling:
        student = cfg.backbone.student
        config = inspect_model(student.name_or_path, "backbone.student.name_or_path", spec.num_labels,
                               cfg.data.max_seq_length)
        if student.layers is not None:
            check_layers(config, OmegaConf.to_object(student.layers) if OmegaConf.is_list(student.layers)
                         else student.layers)
    teachers = teacher_sources(cfg, spec, data_id)
    if distilling:
        layers = OmegaConf.to_object(student.layers) if OmegaConf.is_list(student.layers) else student.layers
        depth = len(layers) if isinstance(layers, list) else layers or config.num_hidden_layers
        check_alignment(strategies["objective"], student.name_or_path, depth, teachers)
    where = "; ".join(
        f"{role} teacher {short_name(s.model)}: "
        + ("given folder" if s.recipe is None else "stored" if s.ready else "to fine-tune") + f" {s.folder}"
        for role, s in teachers.items()
    )
    sizes = ", ".join(f"{len(s.labels)} {name}" for name, s in splits.items())
    log.info("Checked the run in %.1f s: %s (%s; data %s); %s", time.perf_counter() - start, spec.name, sizes,
             data_id, where)
    return Plan(spec, splits, data_id, teachers, strategies, teacher_cache)
