"""``python -m dkd.studies.bench``: time DKD's distillation step side by side, in one process, for full KD and for data
selection at r ∈ {0.5, 0.1} × {entropy, random} × {faithful, efficient, efficient + pool}, with the teacher-output
cache off and warm, for each teacher; write a Markdown table, a JSON record and a PNG plot.

Each case trains one epoch over the same ``--examples`` of the data stream with DKD's own ``DistillSystem`` and
Lightning ``Trainer`` (no evaluation, no checkpoints, no logger), after one untimed warm-up fit per teacher.
``--models offline`` uses the default backbone's installed pretrained models (``conf/backbone/minilm.yaml``: the
student is all-MiniLM-L6-v2's first 3 layers, the teachers all-MiniLM-L6-v2 as ``base`` and all-mpnet-base-v2 as
``large``, each with a new classifier head: it costs what a fine-tuned one does) and the task's real data (its
``task.data_dir``); ``--models paper`` random-initialised bert-base / bert-large shapes and a 6-layer student on random
128-token sequences (the GPU check: nothing has to travel).

``--precision 32-true bf16-mixed`` times every case in each precision, side by side in the one process, with each
precision's own teacher-output cache: the table gains the speed-up of each case over its fp32 run, and every case's
teacher forwards and scoring pass are timed apart (seconds spent inside them), so that one can see which part bf16
speeds up.

    python -m dkd.studies.bench                                   # CPU, SST-2, both teachers, into docs/
    python -m dkd.studies.bench --precision 32-true bf16-mixed    # fp32 against bf16, case by case
    python -m dkd.studies.bench --models paper --precision bf16-mixed --examples 32000 --out docs/benchmarks-gpu
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shlex
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning import Callback
from pytorch_lightning.utilities import move_data_to_device
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification

from dkd.cache import OutputStore, TeacherOutputs
from dkd.data import TaskDataModule, load_task_data
from dkd.flops import FlopCounter, forward_flops
from dkd.models import load_classifier, load_tokenizer, truncate
from dkd.module import DistillSystem
from dkd.paths import CONF
from dkd.provenance import code_version
from dkd.quiet import quiet_libraries
from dkd.strategies.adoption import SingleTeacher
from dkd.strategies.objectives import LogitKD
from dkd.strategies.samplers import AllInstances, MostUncertain, RandomInstances
from dkd.strategies.weighting import StaticWeights
from dkd.tasks import get_task

PAPER = {"student": BertConfig(num_hidden_layers=6), "base": BertConfig(),
         "large": BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)}


HALF = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "16-mixed": torch.float16}


@dataclass
class Case:
    sampler: str  # none | entropy | random
    ratio: float
    mode: str
    pool: int = 1
    cache: bool = False
    precision: str = "32-true"
    compiled: bool = False

    @property
    def setting(self) -> str:
        return self.precision + (" compiled" if self.compiled else "")

    @property
    def label(self) -> str:
        if self.sampler == "none":
            return "full KD" + (" (cache)" if self.cache else "")
        pool = f"+pool{self.pool}" if self.pool > 1 else ""
        return f"{self.sampler} r={self.ratio} {self.mode}{pool}" + (" (cache)" if self.cache else "")

    def at(self, precision: str, compiled: bool = False) -> "Case":
        return Case(self.sampler, self.ratio, self.mode, self.pool, self.cache, precision, compiled)

    def sampler_object(self):
        if self.sampler == "none":
            return AllInstances()
        if self.sampler == "random":
            return RandomInstances(self.ratio, self.mode, pool=self.pool)
        return MostUncertain(self.sampler, ratio=self.ratio, mode=self.mode, pool=self.pool)


def compose_cfg(overrides: list[str]):
    """DKD's config (``conf/train.yaml``) with ``overrides``, resolved as ``train.py`` resolves it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return cfg


def cases(ratios: tuple[float, ...] = (0.5, 0.1)) -> list[Case]:
    """Full KD; each ratio × sampler × mode (the pool keeps a step at B rows: p = 1/r); then full KD and r = min(ratios)
    in the efficient modes again with a warm cache. At r = 1 every sampler keeps every row, so full KD stands for it."""
    out = [Case("none", 1.0, "efficient")]
    for r in ratios:
        for sampler in ("entropy", "random"):
            out += [Case(sampler, r, "faithful"), Case(sampler, r, "efficient"),
                    Case(sampler, r, "efficient", round(1 / r))]
    small = min(ratios)
    out.append(Case("none", 1.0, "efficient", cache=True))
    out += [Case(s, small, "efficient", p, cache=True) for s in ("entropy", "random") for p in (1, round(1 / small))]
    return out


class PeakMemory:
    """Memory a block adds at its peak, in MiB: resident memory (CPU, sampled every 5 ms) above the level at its
    start, after freeing what earlier cases left (``gc``, ``malloc_trim``); or peak allocated CUDA memory."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed memory otherwise
            except OSError:
                pass
            self.start = self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak -= self.start

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


class Sections:
    """Seconds spent inside the teachers' forwards and the scoring pass of one fit: their bound methods wrapped on the
    instances (``TeacherOutputs.forward`` runs only for rows the cache lacks; ``DistillSystem.score`` is the no-grad
    scoring pass of the efficient modes)."""

    def __init__(self, system, outputs):
        self.seconds = {"teacher": 0.0, "scoring": 0.0}
        outputs.forward = self._timed(outputs.forward, "teacher")
        system.score = self._timed(system.score, "scoring")

    def _timed(self, method, name: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
        return timed


class FitTimer(Callback):
    """Wall time from the start of training to its end: every step with its data loading and collation (in the main
    process, as DKD runs by default), the Trainer's set-up excluded."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.seconds = time.perf_counter() - self.start


class SyntheticBatches(torch.utils.data.Dataset):
    """Random token ids of exactly ``length`` tokens (no padding), the same for every role, labels in {0, 1}."""

    def __init__(self, size: int, length: int, vocab: int, roles: list[str], seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1000, vocab, (size, length), generator=g)
        self.labels = torch.randint(0, 2, (size,), generator=g)
        self.roles = roles

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, rows: list[int]) -> dict:
        idx = torch.tensor(rows)
        ids = self.ids[idx]
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        return {"idx": idx, "labels": self.labels[idx], "inputs": {role: inputs for role in self.roles}}


class Bench:
    """The models and data of one teacher's cases, built once; :meth:`run` times one case."""

    def __init__(self, args, teacher: str):
        self.args, self.teacher_role = args, teacher
        if args.models == "paper":
            torch.manual_seed(0)
            self.student = BertForSequenceClassification(PAPER["student"])
            self.teacher = BertForSequenceClassification(PAPER[teacher]).eval()
            data = SyntheticBatches(args.examples, args.length, PAPER["student"].vocab_size, ["student", teacher])
            self.loader = lambda batch: DataLoader(data, batch_size=batch, collate_fn=data.collate)
            self.size, self.mean_tokens = len(data), args.length
        else:
            cfg = compose_cfg([f"task={args.task}"])
            spec, student, name = get_task(args.task), cfg.backbone.student, cfg.backbone.teachers[teacher]
            splits = load_task_data(spec, cfg.task.data_dir, train_limit=args.examples)
            self.student = truncate(load_classifier(student.name_or_path, spec.num_labels), student.layers)
            self.teacher = load_classifier(name, spec.num_labels).eval()
            tokenizers = {"student": load_tokenizer(student.name_or_path), teacher: load_tokenizer(name)}
            self.size = len(splits["train"].labels)
            dm = TaskDataModule(spec, splits, tokenizers, max_seq_length=args.length)
            dm.setup("fit")  # tokenized once for every case
            ids = dm.datasets["train"].encodings["student"]["input_ids"]
            self.mean_tokens = round(sum(map(len, ids)) / len(ids))  # with [CLS] and [SEP]

            def loader(batch: int) -> DataLoader:
                dm.batch_size = batch
                plain = dm.train_dataloader()
                plain.collate_fn.multiple = args.pad_multiple  # fewer distinct widths: fewer shapes to compile
                return plain
            self.loader = loader
        self.initial = {k: v.clone() for k, v in self.student.state_dict().items()}
        self._compiled = None  # (student, teacher) under torch.compile, built at the first compiled case
        # one teacher-output cache per precision: fp32 and bf16 logits never mix, as in DKD's disk cache key
        self.stores = {p: OutputStore.in_memory(self.size, {"logits": (self.teacher.config.num_labels,)})
                       for p in args.precision}

    @torch.no_grad()
    def fill_cache(self, precision: str) -> None:
        """The teacher's logits on every example into ``precision``'s cache (untimed), so that the cached cases are
        all hits."""
        outputs = TeacherOutputs(self.teacher, self.teacher_role, self.stores[precision], "memory")
        device = torch.device("cuda" if self.args.accelerator == "gpu" else "cpu")
        self.teacher.to(device)  # Lightning moved it back to the CPU after the last fit
        half = HALF.get(precision)
        with torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None):
            for batch in self.loader(self.args.batch_size):
                outputs(move_data_to_device(batch, device))

    def models(self, compiled: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The student and the teacher, as they are or wrapped by ``torch.compile`` (default mode, dynamic shapes
        as torch decides: a second width recompiles the graph with a symbolic width). The wrappers are built once,
        so that graphs compiled by one case serve the next; they share their weights with the plain models."""
        if not compiled:
            return self.student, self.teacher
        if self._compiled is None:
            self._compiled = (torch.compile(self.student), torch.compile(self.teacher))
        return self._compiled

    def run(self, case: Case, batches: int | None = None) -> dict:
        args = self.args
        gc.collect()  # the previous case's optimizer state and Trainer, before memory is measured
        self.student.load_state_dict(self.initial)  # every case starts from the same student
        pl.seed_everything(0, verbose=False)
        student, teacher = self.models(case.compiled)
        outputs = TeacherOutputs(teacher, self.teacher_role, self.stores[case.precision] if case.cache else None,
                                 "memory" if case.cache else "off")
        system = DistillSystem(student, {self.teacher_role: teacher}, case.sampler_object(), SingleTeacher(),
                               LogitKD("kl"), StaticWeights(), teacher_outputs={self.teacher_role: outputs},
                               metrics=["acc"], dev_splits=["dev"], num_labels=self.teacher.config.num_labels,
                               lr=2e-5)
        flops, timer, sections = FlopCounter(), FitTimer(), Sections(system, outputs)
        trainer = pl.Trainer(accelerator=args.accelerator, devices=1, precision=case.precision, max_epochs=1,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                             limit_train_batches=batches,
                             callbacks=[flops, timer])
        loader = self.loader(args.batch_size * case.pool)
        graphs = compiled_graphs()
        with PeakMemory(torch.device("cuda" if args.accelerator == "gpu" else "cpu")) as memory:
            trainer.fit(system, train_dataloaders=loader)
        t = flops.totals
        spent = t["student_scoring"] + t["student_train"] + t["teacher_spent"]
        total = t["student_scoring"] + t["student_train"] + t["teacher"]
        return {**asdict(case), "label": case.label, "teacher": self.teacher_role, "examples": t["examples"],
                "wall_s": round(timer.seconds, 2), "examples_per_s": round(t["examples"] / timer.seconds, 1),
                "teacher_s": round(sections.seconds["teacher"], 2), "scoring_s": round(sections.seconds["scoring"], 2),
                "peak_mib": memory.mib, "gflops_per_example": round(total / t["examples"] / 1e9, 3),
                "gflops_spent_per_example": round(spent / t["examples"] / 1e9, 3),
                "flop_ratio": round(total / t["full_kd"], 4), "flop_ratio_spent": round(spent / t["full_kd"], 4),
                "cache_hits": outputs.hits, "cache_misses": outputs.misses, "setting": case.setting,
                "graphs_compiled": compiled_graphs() - graphs}


def warm_up(bench: Bench, precision: str, compiled: bool, ratio: float, cold: bool = False) -> dict:
    """Four batches each of full KD and of entropy selection at ``ratio`` (efficient, faithful), untimed for the
    table: the allocator, kernels and thread pools warm up, and under ``compiled`` every graph those cases need is
    compiled here (training and scoring passes, widths and row counts that vary), so the cases time steady steps.
    ``cold``: first forget every graph compiled in this process and compile into an empty kernel cache, as a user's
    first compiled run does (otherwise a setting would reuse the graphs and kernels of one compiled before it).
    Returns its wall time and the graphs it compiled."""
    if cold:
        torch._dynamo.reset()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="dkd-bench-inductor-")
    start, graphs = time.perf_counter(), compiled_graphs()
    for sampler, mode in (("none", "efficient"), ("entropy", "efficient"), ("entropy", "faithful")):
        bench.run(Case(sampler, 1.0 if sampler == "none" else ratio, mode, precision=precision, compiled=compiled),
                  batches=4)
    return {"teacher": bench.teacher_role, "precision": precision, "compiled": compiled,
            "seconds": round(time.perf_counter() - start, 1), "graphs_compiled": compiled_graphs() - graphs}


def compile_costs(rows: list[dict], warmups: list[dict], examples: int) -> list[dict]:
    """Per teacher and precision: the seconds compiling costs (compiled warm-up − eager warm-up), full KD's seconds
    per example eager and compiled, and whether compiling pays for itself within ``examples`` examples of full KD
    (the default run's): it does when the seconds it saves per example, times ``examples``, exceed its cost."""
    out = []
    for w in (w for w in warmups if w["compiled"]):
        eager = next(e for e in warmups if e["teacher"] == w["teacher"] and e["precision"] == w["precision"]
                     and not e["compiled"])
        full = {r["compiled"]: r for r in rows if r["teacher"] == w["teacher"] and r["precision"] == w["precision"]
                and r["sampler"] == "none" and not r["cache"]}
        cost = round(w["seconds"] - eager["seconds"], 1)
        saved = 1 / full[False]["examples_per_s"] - 1 / full[True]["examples_per_s"]
        out.append({"teacher": w["teacher"], "precision": w["precision"], "compile_s": cost,
                    "graphs": w["graphs_compiled"], "eager_examples_per_s": full[False]["examples_per_s"],
                    "compiled_examples_per_s": full[True]["examples_per_s"], "examples": examples,
                    "break_even_examples": round(cost / saved) if saved > 0 else None,
                    "pays": saved > 0 and saved * examples > cost})
    return out


def compiled_graphs() -> int:
    """Graphs ``torch.compile`` has compiled in this process so far (each new one is a compile or a recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])



def add_ratios(rows: list[dict]) -> None:
    """Time ratio to the same teacher's full KD (same precision, compiled or not) with the cache off, that ratio over
    the FLOP ratio spent, and each case's speed-up over the same case in fp32, not compiled (wall time, teacher
    forwards, scoring pass)."""
    def same(a: dict, b: dict, **differ) -> bool:
        keys = ("teacher", "sampler", "ratio", "mode", "pool", "cache", "precision", "compiled")
        return all(a[k] == differ.get(k, b[k]) for k in keys)

    for row in rows:
        full = next(r for r in rows if same(r, row, sampler="none", ratio=1.0, mode="efficient", pool=1, cache=False))
        row["time_ratio"] = round(row["wall_s"] / full["wall_s"], 4)
        spent = row["flop_ratio_spent"]
        row["time_over_flops"] = round(row["time_ratio"] / spent, 2) if spent else None
        fp32 = next((r for r in rows if same(r, row, precision="32-true", compiled=False)), None)
        row["speed_up_over_fp32"] = None if fp32 is None or fp32 is row else {
            part: round(fp32[key] / row[key], 2) if row[key] else None
            for part, key in (("wall", "wall_s"), ("teacher", "teacher_s"), ("scoring", "scoring_s"))}


PAPER_FIGURES = {"full_kd": 24.9, "random_r0.1": 2.49, "uncertainty_r0.1": 4.65}  # GFLOPs per instance


def paper_accounting(lengths: list[int]) -> list[dict]:
    """Our counter's GFLOPs per training instance for the paper's models (bert-base or bert-large teacher, 6-layer
    bert-base student) at each of ``lengths`` tokens: full KD = teacher forward + student forward and backward;
    r = 0.1 random = 0.1 × that; r = 0.1 uncertainty adds the scoring pass (one student forward)."""
    out = []
    for length in lengths:
        student = forward_flops(PAPER["student"], 1, length) / 1e9
        for teacher in ("base", "large"):
            t = forward_flops(PAPER[teacher], 1, length) / 1e9
            full = t + 3 * student
            out.append({"teacher": f"bert-{teacher}", "student": "bert 6-layer", "tokens": length,
                        "teacher_fwd": round(t, 2), "student_fwd": round(student, 2), "full_kd": round(full, 2),
                        "random_r0.1": round(0.1 * full, 2), "uncertainty_r0.1": round(0.1 * full + student, 2),
                        "scoring_share": round(student / full, 3)})
    return out


def markdown(rows: list[dict], args, machine: str, images: dict[str, Path], target: dict, paper: list[dict],
             compiling: list[dict]) -> str:
    tokens = args.task if args.models == "offline" else "random"
    code = args.code or {}
    commit = f"commit {code['commit'][:7]}" + (" with local changes" if code.get("dirty") else "") if code \
        else "an unknown commit (no git checkout)"
    pad = f", widths padded to a multiple of {args.pad_multiple}" if args.pad_multiple > 1 else ""
    compiled = (", each eager and with student and teacher under `torch.compile` (default mode, dynamic shapes)"
                if args.compile else "")
    lines = ["# Benchmark: data selection, cost and speed\n",
             f"Produced by `{args.command}` at {commit} on {machine}, {time.strftime('%Y-%m-%d')}. "
             f"{args.examples} examples of the data stream per case ({tokens} tokens, up to {args.length}), "
             f"batch B = {args.batch_size}{pad}, precision {' and '.join(args.precision)}{compiled}, one epoch per "
             f"case in one process after a warm-up (the settings alternate case by case). FLOPs are DKD's analytic "
             f"count (`dkd/flops.py`); *time ratio* and *FLOP ratio* compare with full KD for the same teacher and "
             f"precision, cache off; *time/FLOP* is their quotient (1.0: wall time falls exactly as the FLOPs do); "
             f"*teacher s* and *scoring s*: seconds inside the teacher forwards and the scoring pass; *× fp32*: the "
             f"same case's fp32 time (not compiled) over this one's (wall / teacher / scoring); *graphs*: graphs "
             f"`torch.compile` compiled during the case (0: the warm-up compiled all it needed).\n",
             f"![time ratio against FLOP ratio, {rows[0]['setting']}]({images['png']})\n"]
    if "speed_ups" in images:
        lines.append(f"![speed-up of each setting over fp32, case by case]({images['speed_ups']})\n")
    for teacher in dict.fromkeys(r["teacher"] for r in rows):
        lines += [f"## {teacher} teacher\n",
                  "| case | precision | examples/s | wall s | teacher s | scoring s | × fp32 | graphs | peak MiB added "
                  "| GFLOPs/example (spent) | FLOP ratio (spent) | time ratio | time/FLOP | cache hits/misses |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["teacher"] == teacher):
            cache = f"{r['cache_hits']}/{r['cache_misses']}" if r["cache"] else "off"
            up = r.get("speed_up_over_fp32")
            faster = " / ".join("–" if up[k] is None else f"{up[k]}" for k in ("wall", "teacher", "scoring")) \
                if up else "–"
            lines.append(f"| {r['label']} | {r['setting']} | {r['examples_per_s']} | {r['wall_s']} | "
                         f"{r['teacher_s']} | {r['scoring_s']} | {faster} | {r['graphs_compiled']} | {r['peak_mib']} | "
                         f"{r['gflops_per_example']} ({r['gflops_spent_per_example']}) | {r['flop_ratio']} "
                         f"({r['flop_ratio_spent']}) | {r['time_ratio']} | {r['time_over_flops']} | {cache} |")
        lines.append("")
    if compiling:
        lines += ["## Compiling\n", "The compiled warm-up's wall time over the eager one's is what compiling costs; "
                  "*pays* says whether full KD's seconds saved per example, over the examples of one default run, "
                  "exceed it (the evaluation's own graphs, compiled too in a run, are not counted: a lower bound).\n",
                  "| teacher | precision | compile s | graphs | full KD examples/s eager → compiled | break-even "
                  "examples | pays within |", "|---|---|---:|---:|---|---:|---|"]
        for c in compiling:
            even = c["break_even_examples"] if c["break_even_examples"] is not None else "never (slower)"
            lines.append(f"| {c['teacher']} | {c['precision']} | {c['compile_s']} | {c['graphs']} | "
                         f"{c['eager_examples_per_s']} → {c['compiled_examples_per_s']} | {even} | "
                         f"{c['examples']} examples: **{'yes' if c['pays'] else 'no'}** |")
        lines.append("")
    lines += ["## Targets\n"]
    for name, ok in target.items():
        lines.append(f"- {name}: **{'met' if ok else 'not met'}**")
    scoring = PAPER_FIGURES["uncertainty_r0.1"] - PAPER_FIGURES["random_r0.1"]
    lines += ["", "## The paper's models in our count\n",
              "GFLOPs per training instance from `dkd/flops.py` for the paper's shapes (6-layer bert-base student), "
              "beside the paper's figures; *scoring share* is the scoring pass over full KD "
              f"(paper: {scoring:.2f} / {PAPER_FIGURES['full_kd']} = {scoring / PAPER_FIGURES['full_kd']:.3f}).\n",
              "| teacher | tokens | teacher fwd | student fwd | full KD | random r=0.1 | uncertainty r=0.1 "
              "| scoring share |",
              "|---|---:|---:|---:|---:|---:|---:|---:|",
              "| paper (its accounting) | ? | | | 24.9 | 2.49 | 4.65 | 0.087 |"]
    for p in paper:
        lines.append(f"| {p['teacher']} | {p['tokens']} | {p['teacher_fwd']} | {p['student_fwd']} | {p['full_kd']} | "
                     f"{p['random_r0.1']} | {p['uncertainty_r0.1']} | {p['scoring_share']} |")
    share = {p["teacher"]: p["scoring_share"] for p in paper if p["tokens"] == args.length}
    lines += ["", "The paper does not say how it counts. What can be checked: its random r = 0.1 costs exactly 0.1 × "
              "full KD, as in our count (random needs no scoring pass); and uncertainty − random is the scoring pass, "
              "one student forward per instance, which it puts at 8.7% of full KD. With backward = 2 × forward that "
              f"share is S / (T + 3S) in any unit: at {args.length} tokens {share.get('bert-base')} with a bert-base "
              f"teacher and {share.get('bert-large')} with bert-large, so the paper's split is closer to a bert-large "
              "teacher's than to a bert-base one. The absolute figures differ by "
              "convention: we count a multiply-add as 2 FLOPs (halve ours for MACs), count attention over the padded "
              "width of each batch, leave out embeddings, layer norms and softmax, and the count scales with the "
              "sequence length, which the paper does not state (the rows above give 128 and the task's mean length "
              "with [CLS]/[SEP]). DKD reports its own count consistently, and the ratios to full KD do not depend on "
              "the convention."]
    return "\n".join(lines) + "\n"


def targets(rows: list[dict], ratio: float) -> dict[str, bool]:
    """Efficient mode, cache off, r = ``ratio`` (entropy, with and without a pool): wall-time ratio ≤ 1.2 × FLOP
    ratio; faithful: student cost kept, teacher cost × r (FLOP ratio between r and 1)."""
    out = {}
    for teacher in dict.fromkeys(r["teacher"] for r in rows):
        mine = [r for r in rows if r["teacher"] == teacher and not r["cache"] and r["ratio"] == ratio
                and r["setting"] == rows[0]["setting"]]
        for r in (r for r in mine if r["sampler"] == "entropy" and r["mode"] == "efficient"):
            out[f"{teacher}: {r['label']}: time ratio {r['time_ratio']} ≤ 1.2 × FLOP ratio {r['flop_ratio']} "
                f"(= {1.2 * r['flop_ratio']:.3f})"] = r["time_ratio"] <= 1.2 * r["flop_ratio"]
    return out


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teachers = list(dict.fromkeys(r["teacher"] for r in rows))
    fig, axes = plt.subplots(1, len(teachers), figsize=(6 * len(teachers), 5), squeeze=False)
    marker = {"faithful": "s", "efficient": "o"}
    for ax, teacher in zip(axes[0], teachers):
        for r in (r for r in rows if r["teacher"] == teacher):
            color = {"none": "black", "entropy": "tab:red", "random": "tab:blue"}[r["sampler"]]
            ax.scatter(r["flop_ratio_spent"], r["time_ratio"], marker="^" if r["pool"] > 1 else marker[r["mode"]],
                       edgecolors=color, facecolors="none" if r["cache"] else color, s=50)
            ax.annotate(r["label"].replace(" efficient", " eff").replace("faithful", "faith"),
                        (r["flop_ratio_spent"], r["time_ratio"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.plot([0, 1.05], [0, 1.05], "k--", lw=0.8, label="time = FLOPs")
        ax.plot([0, 1.05], [0, 1.26], "g:", lw=0.8, label="1.2 × FLOPs (target)")
        ax.set(xlabel="FLOP ratio to full KD (spent)", ylabel="wall-time ratio to full KD", title=f"{teacher} teacher",
               xlim=(0, 1.1), ylim=(0, max(1.1, max(r["time_ratio"] for r in rows if r["teacher"] == teacher) + 0.05)))
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("red entropy, blue random, black full KD; ■ faithful, ● efficient, ▲ efficient + pool; "
                 "hollow: warm cache", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def plot_speed_ups(rows: list[dict], png: Path) -> None:
    """One bar per case and setting: its speed-up over the same case in fp32, not compiled, for the wall time, the
    teacher forwards and the scoring pass (a panel each); a row of panels per teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faster = [r for r in rows if r["speed_up_over_fp32"]]
    teachers = list(dict.fromkeys(r["teacher"] for r in faster))
    settings = list(dict.fromkeys(r["setting"] for r in faster))
    parts = ("wall", "teacher", "scoring")
    fig, axes = plt.subplots(len(teachers), 3, figsize=(15, 4 * len(teachers)), squeeze=False)
    for row_axes, teacher in zip(axes, teachers):
        labels = list(dict.fromkeys(r["label"] for r in faster if r["teacher"] == teacher))
        width = 0.8 / len(settings)
        for ax, part in zip(row_axes, parts):
            for i, setting in enumerate(settings):
                mine = {r["label"]: r["speed_up_over_fp32"][part] for r in faster
                        if r["teacher"] == teacher and r["setting"] == setting}
                ax.bar([x + i * width for x in range(len(labels))], [mine.get(label) or 0 for label in labels],
                       width, label=setting)
            ax.axhline(1.0, color="black", lw=0.8, ls="--")
            ax.set_xticks([x + width * (len(settings) - 1) / 2 for x in range(len(labels))])
            ax.set_xticklabels([label.replace(" efficient", " eff") for label in labels], rotation=20, fontsize=7)
            ax.set(title=f"{teacher} teacher: {part}", ylabel="speed-up over fp32 (×)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dkd.studies.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", choices=["offline", "paper"], default="offline")
    parser.add_argument("--teachers", default="base,large", help="comma-separated: base, large")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--examples", type=int, default=1920, help="examples of the data stream per case")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128, help="max_seq_length (paper: every sequence this long)")
    parser.add_argument("--ratios", default="0.5,0.1")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["32-true"],
                        help="one or more Lightning precisions, timed case by case (e.g. 32-true bf16-mixed)")
    parser.add_argument("--out", default="docs/benchmarks.md", help="Markdown; the JSON record goes beside it")
    parser.add_argument("--png", default="docs/img/benchmark.png")
    parser.add_argument("--compile", action="store_true",
                        help="time every case also with the student and the teacher under torch.compile")
    parser.add_argument("--default-examples", type=int, default=30000,
                        help="examples one default run trains on (SST-2: 10,000 × 3 epochs): does compiling pay there")
    parser.add_argument("--pad-multiple", type=int, default=1,
                        help="pad each batch to a multiple of this many tokens (bucketed widths for compiled graphs)")
    parser.add_argument("--only", default=None, help="comma-separated case labels to run (for a quick look)")
    args = parser.parse_args(argv)
    given = argv if argv is not None else os.sys.argv[1:]
    args.command = "python -m dkd.studies.bench" + (" " + " ".join(shlex.quote(a) for a in given)).rstrip()
    args.code = code_version()
    quiet_libraries()
    ratios = tuple(float(r) for r in args.ratios.split(","))
    plan = cases(ratios)
    if args.only:
        wanted = set(args.only.split(","))
        plan = [c for c in plan if c.label in wanted or c.sampler == "none" and not c.cache]
    machine = (f"{torch.cuda.get_device_name()}" if args.accelerator == "gpu" else
               f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)") + \
        f", torch {torch.__version__}"
    settings = [(p, compiled) for p in args.precision for compiled in ((False, True) if args.compile else (False,))]
    rows, warmups, lengths = [], [], [args.length]
    from tqdm.auto import tqdm
    for teacher in args.teachers.split(","):
        bench = Bench(args, teacher)
        lengths.append(bench.mean_tokens)
        for precision, compiled in settings:  # each compiled setting's cost measured cold
            warmups.append(warm_up(bench, precision, compiled, min(ratios), cold=compiled))
        for precision, compiled in [s for s in settings if s[1]][:-1]:  # their graphs again, dropped by a later reset
            warm_up(bench, precision, compiled, min(ratios))
        for case in tqdm([c.at(p, k) for c in plan for p, k in settings], desc=f"{teacher} teacher", unit="case"):
            if case.cache and not bench.stores[case.precision].filled.all():
                bench.fill_cache(case.precision)
            rows.append(bench.run(case))
            tqdm.write(f"{teacher} {case.label} {case.setting}: {rows[-1]['examples_per_s']} examples/s, "
                       f"{rows[-1]['wall_s']} s")
    add_ratios(rows)
    compiling = compile_costs(rows, warmups, args.default_examples)
    out, png = Path(args.out), Path(args.png)
    plot([r for r in rows if r["setting"] == rows[0]["setting"]], png)
    speed_ups = png.with_name(png.stem + "-speed-up.png") if len(settings) > 1 else None
    if speed_ups:
        plot_speed_ups(rows, speed_ups)
    target = targets(rows, min(ratios))
    paper = paper_accounting(sorted(set(lengths)))
    record = {"command": args.command, "code": args.code, "machine": machine, "rows": rows, "warmups": warmups,
              "compile": compiling, "targets": target, "paper_accounting": paper}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    relative = {name: Path(os.path.relpath(path, out.parent)) for name, path in (("png", png), ("speed_ups", speed_ups))
                if path}
    out.write_text(markdown(rows, args, machine, relative, target, paper, compiling))
    print(", ".join(map(str, [out, out.with_suffix(".json"), png] + ([speed_ups] if speed_ups else []))))


if __name__ == "__main__":
    main()
