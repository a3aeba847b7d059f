"""Fixtures: tiny random-initialised models built from configs, GLUE-layout fixture data, and the real composed
config shrunk to them (as lightning-hydra-template's conftest does)."""
from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("DKD_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "movie", "plot", "actor", "the", "a", "is", "was", "very"]
POSITIVE = {"good", "great", "fine"}

# A gloo worker now and then aborts in its teardown, after its work, on a loaded machine (Lightning's own ddp_spawn
# tests see the same: pytorch-lightning #20620, #20933). Such a test runs once more; any other failure fails it.
gloo_teardown_flaky = pytest.mark.flaky(reruns=1, only_rerun=["terminated with signal SIGABRT"])


def sentence(rng: random.Random) -> tuple[str, int]:
    words = rng.choices(WORDS, k=rng.randint(3, 9))
    return " ".join(words), int(sum(w in POSITIVE for w in words) >= 1)


def write_tsv(path: Path, header: list[str] | None, rows: list[list], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig" if bom else "utf-8")


def make_glue(root: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    """A GLUE folder with the official files' quirks: MRPC BOM, CoLA without header, string labels, MNLI m/mm."""
    rng = random.Random(0)

    def rows(n):
        return [sentence(rng) for _ in range(n)]

    for split, n in (("train", n_train), ("dev", n_dev)):
        data = rows(n)
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], [[s, y] for s, y in data])
        write_tsv(root / "CoLA" / f"{split}.tsv", None, [["src", y, "", s] for s, y in data])
        write_tsv(root / "MRPC" / f"{split}.tsv", ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                  [[y, i, i, s, s[::-1]] for i, (s, y) in enumerate(data)], bom=True)
        write_tsv(root / "RTE" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"],
                  [[i, s, 'a "quoted" plot', "entailment" if y else "not_entailment"] for i, (s, y) in enumerate(data)])
        write_tsv(root / "STS-B" / f"{split}.tsv", ["index", "sentence1", "sentence2", "score"],
                  [[i, s, s, 5.0 * y] for i, (s, y) in enumerate(data)])
    for split, n in (("train", n_train), ("test", n_dev)):  # IMDb's layout (IMDB_DIR), beside the GLUE folders
        write_tsv(root.parent / "imdb" / f"{split}.tsv", ["sentence", "label", "source_file"],
                  [[s, y, f"{i}.txt"] for i, (s, y) in enumerate(rows(n))])
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev)):  # SST-5's layout (SST5_DIR): 5 labels
        write_tsv(root.parent / "sst5" / f"{split}.tsv", ["sentence", "label"],
                  [[s, i % 3 + 2 * y] for i, (s, y) in enumerate(rows(n))])
    labels = ["entailment", "neutral", "contradiction"]
    mnli = lambda n: [[i, s, s, labels[(i + y) % 3]] for i, (s, y) in enumerate(rows(n))]  # noqa: E731
    header = ["index", "sentence1", "sentence2", "gold_label"]
    write_tsv(root / "MNLI" / "train.tsv", header, mnli(n_train))
    write_tsv(root / "MNLI" / "dev_matched.tsv", header, mnli(n_dev))
    write_tsv(root / "MNLI" / "dev_mismatched.tsv", header, mnli(n_dev))
    return root


def make_tiny_model(path: Path, vocab_order: int = 1, layers: int = 4, dropout: float = 0.1, hidden: int = 32) -> Path:
    """A random BERT encoder (hidden 32 by default, no task head, like a pretrained checkpoint) and its WordPiece
    tokenizer over WORDS; ``vocab_order`` changes the ids."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(WORDS + ["quoted", '"', "."])[::vocab_order]
    (path / "vocab.txt").write_text("\n".join(specials + words) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"))
    tokenizer.save_pretrained(path)
    config = BertConfig(vocab_size=len(specials) + len(words), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    return {
        "glue": make_glue(root / "glue"),
        "imdb": root / "imdb",
        "sst5": root / "sst5",
        "teacher": make_tiny_model(root / "tiny-teacher"),
        "large": make_tiny_model(root / "tiny-large", vocab_order=-1, layers=2),
        "student": make_tiny_model(root / "tiny-student"),
    }


def compose_cfg(overrides: list[str] | None = None) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides or [], return_hydra_config=True)


def shrunk_cfg(assets: dict, root: Path, *overrides: str, out: str = "run") -> DictConfig:
    """The real config, shrunk: tiny models, fixture data, one epoch, outputs under ``root``."""
    base = [
        f"paths.glue_dir={assets['glue']}", f"paths.imdb_dir={assets['imdb']}",
        f"paths.sst5_dir={assets['sst5']}", f"paths.log_dir={root}",
        f"backbone.teachers.base={assets['teacher']}", f"backbone.teachers.large={assets['large']}",
        f"backbone.student.name_or_path={assets['student']}", "backbone.student.layers=2",
        "task.train_limit=null", "finetune.epochs=1", "distill.epochs=1", "finetune.batch_size=8",
        "distill.batch_size=8", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        "finetune.lr=1e-3", "distill.lr=1e-3", "trainer.log_every_n_steps=1",
    ]
    if not any(o.startswith("compress.enabled=") for o in overrides):  # tests/test_compress.py measures it
        base.append("compress.enabled=false")
    cfg = compose_cfg(base + list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / out)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # as in a real run, the job's config holds no hydra node
    return cfg


@pytest.fixture
def make_cfg(assets, tmp_path):
    """:func:`shrunk_cfg` under the test's own folder."""
    yield lambda *overrides, out="run": shrunk_cfg(assets, tmp_path, *overrides, out=out)
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def distilled(assets, tmp_path_factory) -> Path:
    """One finished distillation of a pair task (MRPC) with its compression report and model card, shared by the
    tests that only read it (copy it before changing it)."""
    from dkd.run import run

    cfg = shrunk_cfg(assets, tmp_path_factory.mktemp("distilled"), "task=mrpc", "task.train_limit=24",
                     "compress.enabled=true", "compress.repeats=2", "compress.warmup=1", "compress.batch_sizes=[1,4]",
                     "data.max_seq_length=32")
    run(cfg)
    GlobalHydra.instance().clear()
    return Path(cfg.paths.output_dir)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    path = os.environ.get("GLUE_DIR")
    if not path or not Path(path, "SST-2", "train.tsv").is_file():
        pytest.skip("GLUE_DIR is not set to a GLUE folder with SST-2 (the integration test needs real data)")
    return Path(path)


@pytest.fixture
def no_fit(monkeypatch):
    """Fails the test if any model is trained (``Trainer.fit``): for checks that must come before all training."""
    calls = []

    def fit(self, *args, **kwargs):
        calls.append(args)
        raise AssertionError("Trainer.fit was called: the run was not checked before training")

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    return calls


class InterruptAt(pl.Callback):
    """Stops training at optimizer step ``step``: an exception before (``hook=start``) or after (``end``) that batch,
    or a real SIGTERM to this process after it (``sigterm``, as a cluster's preemption sends). For resume tests:
    ``+callbacks.stop._target_=tests.conftest.InterruptAt``."""

    def __init__(self, step: int, hook: str = "end"):
        self.step, self.hook = step, hook

    def _maybe_stop(self, trainer, hook: str) -> None:
        if hook == self.hook and trainer.global_step == self.step:
            raise RuntimeError(f"interrupted at step {self.step} (batch {hook})")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._maybe_stop(trainer, "start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_stop(trainer, "end")
        if self.hook == "sigterm" and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler stops the loop after this batch


class SignalAt(pl.Callback):
    """Sends this process a signal after the training batch that ends at a global step of a stage, as a cluster does
    before a time-out or a preemption. Driven by the environment, so that a requeued job's overrides stay the same:
    ``DKD_SIGNAL_AT="student:3,student:6"`` (``teacher:<step>`` for a teacher's fine-tuning), ``DKD_SIGNAL=USR2``;
    ``DKD_STEPS_LOG=<file>``: each trained step as ``<pid> <stage> <step>``, to tell a resume from a restart. For
    requeue tests: ``+callbacks.signal._target_=tests.conftest.SignalAt``; ``DKD_SIGNAL_JOB=0``: in that job of a
    multirun only."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from dkd.module import FineTuneSystem

        only = os.environ.get("DKD_SIGNAL_JOB")
        if only is not None and only != str(HydraConfig.get().job.num):
            return

        stage = "teacher" if isinstance(pl_module, FineTuneSystem) else "student"
        if os.environ.get("DKD_STEPS_LOG"):
            with open(os.environ["DKD_STEPS_LOG"], "a") as log:
                log.write(f"{os.getpid()} {stage} {trainer.global_step}\n")
        if f"{stage}:{trainer.global_step}" in os.environ.get("DKD_SIGNAL_AT", "").split(","):
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("DKD_SIGNAL", "USR2")))


class RecordDecisions(pl.Callback):
    """After each training step, what the strategies decided over the global batch, by example id, as one JSON line
    in ``path`` (rank 0 writes): the trained rows, the distilled ones, each route's teachers, rows and weights, and
    the step's loss terms. ``+callbacks.record._target_=tests.conftest.RecordDecisions +callbacks.record.path=…``."""

    def __init__(self, path: str):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from dkd.global_batch import GlobalBatch

        step = pl_module.step_record
        ids = GlobalBatch.of(pl_module, pl_module.scope).whole(batch["idx"])[step["rows"]]  # every rank gathers
        if trainer.global_rank:
            return
        kd = ids[step["kd_rows"]]
        routes = [{"teachers": list(r.teachers), "ids": ids[r.index].tolist(),
                   "weight": (r.weight.tolist() if torch.is_tensor(r.weight) and r.weight.dim() else float(r.weight))}
                  for r in step["routes"]]
        weights = {k: v.tolist() for k, v in step["weights"].items()}
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"trained": ids.tolist(), "distilled": kd.tolist(), "routes": routes,
                                 "weights": weights, "loss": float(trainer.callback_metrics["train/loss"])}) + "\n")


class Collapse(pl.Callback):
    """When training ends, the student's classifier bias makes it predict class 0 for every row: a collapsed student,
    made on purpose. With ``callbacks.model_checkpoint=null`` the run keeps that model."""

    def on_train_end(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.model.classifier.bias.copy_(torch.tensor([100.0, -100.0]))


def asked_flops(flops: dict) -> dict:
    """The FLOPs the method asked for, out of ``metrics.json``'s ``flops`` (teacher forwards a cache spared included:
    runs side by side share the disk cache, so what each spent depends on which filled it first)."""
    return {k: ({kk: vv for kk, vv in v.items() if "spent" not in kk} if isinstance(v, dict) else v)
            for k, v in flops.items() if "spent" not in k}
