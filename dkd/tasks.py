"""The table of supported tasks: their files, text and label columns, and how they are scored."""

from __future__ import annotations

import codecs
import dataclasses
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from dkd.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """Static facts about one task.

    ``labels`` lists the label values as they appear in the local files, in the order of the hub's integer ids;
    ``None`` marks a regression task. ``dev_files`` maps a dev split's name to its local file (MNLI has two).
    ``columns`` / ``label_column`` name local TSV columns; ``header=False`` files are read positionally, so there
    the names are positions (CoLA).
    """

    name: str
    local_dir: str | None
    columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    hub_path: str
    hub_config: str | None
    hub_columns: tuple[str, ...]
    train_file: str = "train.tsv"
    dev_files: dict[str, str] = field(default_factory=lambda: {"dev": "dev.tsv"})
    hub_dev_splits: dict[str, str] = field(default_factory=lambda: {"dev": "validation"})
    header: bool = True
    # a labelled test split, read only after training (``python -m dkd.ship.evaluate``), never to choose a model
    test_file: str | None = None
    hub_test_split: str | None = None
    encoding: str = "utf-8"  # of the local files (``task.encoding``); the hub's copies are decoded by ``datasets``

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


def _glue(name, local_dir, columns, label_column, labels, metrics, hub_columns, **kw) -> TaskSpec:
    return TaskSpec(name, local_dir, columns, label_column, labels, metrics, "nyu-mll/glue", name, hub_columns, **kw)


BINARY = ("0", "1")
NLI = ("entailment", "not_entailment")
PAIR = ("sentence1", "sentence2")
QUESTIONS = ("question1", "question2")
MNLI_LABELS = ("entailment", "neutral", "contradiction")
# one row per task: name, GLUE folder, local text columns, local label column, labels, metrics, hub text columns
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _glue("cola", "CoLA", ("3",), "1", BINARY, ("mcc",), ("sentence",), header=False),
        _glue("sst2", "SST-2", ("sentence",), "label", BINARY, ("acc",), ("sentence",)),
        _glue("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", BINARY, ("acc", "f1"), PAIR),
        _glue("stsb", "STS-B", PAIR, "score", None, ("pearson", "spearman"), PAIR),
        _glue("qqp", "QQP", QUESTIONS, "is_duplicate", BINARY, ("acc", "f1"), QUESTIONS),
        _glue("mnli", "MNLI", PAIR, "gold_label", MNLI_LABELS, ("acc",), ("premise", "hypothesis"),
              dev_files={"dev_m": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"},
              hub_dev_splits={"dev_m": "validation_matched", "dev_mm": "validation_mismatched"}),
        _glue("qnli", "QNLI", ("question", "sentence"), "label", NLI, ("acc",), ("question", "sentence")),
        _glue("rte", "RTE", PAIR, "label", NLI, ("acc",), PAIR),
        _glue("wnli", "WNLI", PAIR, "label", BINARY, ("acc",), PAIR),
        TaskSpec("imdb", None, ("sentence",), "label", BINARY, ("acc",), "stanfordnlp/imdb", None, ("text",),
                 dev_files={"dev": "test.tsv"}, hub_dev_splits={"dev": "test"}),
        # SST-5 (sentence level, 0 very negative ... 4 very positive): one of the paper's data-selection tasks, where
        # entropy, margin and least confidence rank rows differently (on two classes they agree)
        TaskSpec("sst5", None, ("sentence",), "label", ("0", "1", "2", "3", "4"), ("acc",), "SetFit/sst5", None,
                 ("text",), test_file="test.tsv", hub_test_split="test"),
    ]
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise UserError(f"Unknown task '{name}'. Known: {', '.join(sorted(TASKS))}, or task=custom for your own files.")
    return TASKS[name]


CLASS_METRICS = {"acc", "f1", "mcc"}
REGRESSION_METRICS = {"pearson", "spearman"}


def custom_task(columns, label_column, labels, metrics, train_file, dev_file) -> TaskSpec:
    """A task over the user's own CSV/TSV/JSON(L) files (``task=custom``); checks metrics against the labels."""
    metrics = tuple(metrics)
    unknown = set(metrics) - CLASS_METRICS - REGRESSION_METRICS
    if unknown:
        known = sorted(CLASS_METRICS | REGRESSION_METRICS)
        raise UserError(f"task.metrics: unknown {sorted(unknown)}; choose from {known}.")
    if labels is None and set(metrics) & CLASS_METRICS:
        raise UserError(f"task.labels=null makes task=custom a regression, but task.metrics={list(metrics)} are for "
                        f"classes: use task.metrics=[pearson,spearman], or list the labels in task.labels.")
    if labels is not None and set(metrics) & REGRESSION_METRICS:
        raise UserError(f"task.metrics={list(metrics)}: pearson/spearman need a regression (task.labels=null).")
    if labels is not None and "f1" in metrics and len(labels) != 2:
        raise UserError(f"task.metrics has f1, which scores binary tasks, but task.labels has {len(labels)} values.")
    return TaskSpec(
        "custom", None, tuple(columns), label_column, None if labels is None else tuple(str(x) for x in labels),
        metrics, hub_path="", hub_config=None, hub_columns=(), train_file=train_file, dev_files={"dev": dev_file},
    )


def task_spec(cfg: DictConfig) -> TaskSpec:
    """The task of the run, its files read in ``task.encoding``."""
    encoding = str(cfg.task.get("encoding") or "utf-8")  # task.encoding=1252 arrives as an int
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UserError(f"task.encoding={encoding}: Python knows no such encoding. Name the encoding of the task's "
                        f"files, e.g. utf-8 (the default), latin-1, cp1252 or utf-16.") from None
    if cfg.task.name != "custom":
        return dataclasses.replace(get_task(cfg.task.name), encoding=encoding)
    t = cfg.task
    for key in ("train_file", "dev_file", "labels"):
        if OmegaConf.is_missing(t, key):
            raise UserError(f"task=custom needs task.{key}= (see conf/task/custom.yaml for an example).")
    spec = custom_task(t.text_columns, t.label_column, t.labels, t.metrics, t.train_file, t.dev_file)
    return dataclasses.replace(spec, encoding=encoding)
