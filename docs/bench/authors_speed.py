"""Helper of docs/bench/authors_speed.sh (read that file's header first): the training speed of lancopku/DynamicKD's
``dynamic_data.py`` against DKD's entropy selection, on the same data, teacher, student initialisation and threads.

It runs in two Python environments, so it imports nothing but the standard library at module level:

  prepare   (DKD's environment)     the data folder, the student initialisation and the teacher in the format that
                                    transformers 4.5.1 reads, for the authors' code
  authors   (the authors' venv)     runs their script unchanged, with two runtime patches of HF's Trainer (the step and
                                    loop timer, and the resume-from-model-folder guard: see authors_speed.sh)
  loop_timer (DKD's environment)    a Lightning callback factory for ``+callbacks.<name>._target_=authors_speed.loop_timer``
  probe     (the authors' venv)     their tokens, teacher and student logits on the first rows, for verify
  verify    (DKD's environment)     the same from DKD's side: same tokens, same logits (before any timing)
  annotate  (any environment)       adds the run's name, label and command to its result file
  summary   (any environment)       the Markdown table from the runs' result files
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path


def _write_json(path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")


# --------------------------------------------------------------------------------------------------------- prepare
def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """A GLUE TSV as DKD reads it (no quoting): header and rows."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], rows[1:]


def prepare(args) -> None:
    import torch
    from safetensors.torch import load_file

    out = Path(args.out)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    src = Path(args.sst2)

    # 1. the data: SST-2's first ROWS training rows and the whole dev set, as TSV (DKD) and JSON lines (theirs)
    for split, limit in (("train", args.rows), ("dev", args.dev_rows)):
        header, rows = _read_tsv(src / f"{split}.tsv")
        if header != ["sentence", "label"]:
            sys.exit(f"{src / split}.tsv: unexpected header {header}")
        rows = rows[:limit] if limit else rows
        if limit and len(rows) < limit:
            sys.exit(f"{src}/{split}.tsv has only {len(rows)} rows, fewer than the {limit} asked for")
        # DKD: the same bytes as the source file's first lines (header kept)
        with open(src / f"{split}.tsv", encoding="utf-8") as fin, open(data / f"{split}.tsv", "w",
                                                                        encoding="utf-8") as fout:
            for i, line in enumerate(fin):
                if limit is not None and i > limit:
                    break
                fout.write(line)
        # theirs: one JSON object a line; `.json` because their DataTrainingArguments accept csv/json/tsv only
        with open(data / f"{split}.json", "w", encoding="utf-8") as fout:
            fout.writelines(json.dumps({"sentence": sentence, "label": int(label)}) + "\n" for sentence, label in rows)
        print(f"data: {split} {len(rows)} rows -> {data / f'{split}.tsv'}, {data / f'{split}.json'}")

    # 2. the student initialisation, built by DKD itself exactly as dkd.run.distill builds it at `seed`:
    #    pl.seed_everything(seed, workers=True); load_classifier(student, num_labels, labels); truncate(model, layers)
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from dkd.models import load_classifier, resolve, truncate
    from dkd.tasks import get_task

    with initialize_config_dir(config_dir=str(Path(args.repo) / "conf"), version_base=None):
        cfg = compose(config_name="train")
    spec = get_task("sst2")
    s = cfg.backbone.student
    pl.seed_everything(args.seed, workers=True)
    model = load_classifier(s.name_or_path, len(spec.labels), list(spec.labels))
    truncate(model, int(s.layers))
    student = out / "student-init"
    student.mkdir(exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    torch.save(state, student / "pytorch_model.bin")  # transformers 4.5.1 reads no safetensors
    config = model.config.to_dict()
    config["architectures"] = ["BertForSequenceClassification"]
    _write_json(student / "config.json", config)
    tok_src = Path(resolve(s.name_or_path))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):  # a 4.x-era slow-tokenizer set
        shutil.copy(tok_src / name, student / name)
    print(f"student: {s.name_or_path} ({tok_src}), first {s.layers} layers, head at seed {args.seed} -> {student} "
          f"({sum(v.numel() for v in state.values()) / 1e6:.1f}M parameters)")

    # 3. the teacher: the same tensors as the DKD teacher folder, as pytorch_model.bin
    teacher_src = Path(args.teacher)
    teacher = out / "teacher-hf4"
    teacher.mkdir(exist_ok=True)
    weights = sorted(teacher_src.glob("*.safetensors"))
    if len(weights) == 1:
        state = load_file(str(weights[0]))
    elif (teacher_src / "pytorch_model.bin").is_file():
        state = torch.load(teacher_src / "pytorch_model.bin", map_location="cpu")
    else:
        sys.exit(f"{teacher_src}: expected one *.safetensors or a pytorch_model.bin")
    torch.save(state, teacher / "pytorch_model.bin")
    shutil.copy(teacher_src / "config.json", teacher / "config.json")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):  # not read by their code
        if (tok_src / name).is_file():
            shutil.copy(tok_src / name, teacher / name)
    print(f"teacher: {teacher_src} -> {teacher} ({sum(v.numel() for v in state.values()) / 1e6:.1f}M parameters)")


# --------------------------------------------------------------------------------------------------------- authors
def authors(args, script_args: list[str]) -> None:
    """Run their script as ``python <script> <args>`` would, in this process, with HF's Trainer patched twice:
    a timing callback is added, and a ``resume_from_checkpoint`` that is a plain model folder (no trainer_state.json)
    is dropped. Their dynamic_data.py (run_glue.py's logic) resumes from --model_name_or_path whenever it is a local
    folder whose config has the task's label count; with a hub id (bert-base-uncased, as their scripts pass) it never
    does. HF 4.5.1's resume reloads the model class without the teacher and the selection arguments, so the run would
    stop at their `assert self.teacher is not None`. Dropping it gives what their scripts do with a hub id."""
    import torch

    torch.set_num_threads(args.threads)
    script = Path(script_args[0]).resolve()
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *script_args[1:]]

    import transformers
    from transformers import TrainerCallback

    result: dict = {"side": "authors", "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": transformers.__version__}

    class Timer(TrainerCallback):
        """HF's on_step_begin comes after the batch is fetched; on_step_end after backward, clipping, optimizer and
        scheduler steps and zero_grad. The loop: from the epoch's start to the last step's end."""

        def __init__(self):
            self.step_s, self.steps, self.loop_start, self.last_end, self._t = 0.0, 0, None, None, 0.0

        def on_epoch_begin(self, args, state, control, **kw):
            if self.loop_start is None:
                self.loop_start = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.last_end = time.perf_counter()
            self.step_s += self.last_end - self._t
            self.steps += 1

        def on_log(self, args, state, control, logs=None, **kw):
            for key in ("train_runtime", "train_samples_per_second"):
                if logs and key in logs:
                    result[f"hf_{key}"] = logs[key]

    original = transformers.Trainer.train

    def train(self, resume_from_checkpoint=None, **kwargs):
        if (isinstance(resume_from_checkpoint, str) and os.path.isdir(resume_from_checkpoint)
                and not os.path.isfile(os.path.join(resume_from_checkpoint, "trainer_state.json"))):
            print(f"[authors_speed] resume_from_checkpoint={resume_from_checkpoint} is a model folder, not a Trainer "
                  f"checkpoint: not resumed (as with a hub id)", flush=True)
            resume_from_checkpoint = None
        timer = Timer()
        self.add_callback(timer)
        rows = len(self.train_dataset) * int(self.args.num_train_epochs)
        wall = time.perf_counter()
        out = original(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        result.update(
            rows=rows, steps=timer.steps, batch_size=self.args.train_batch_size, step_s=round(timer.step_s, 3),
            loop_s=round(timer.last_end - timer.loop_start, 3), train_call_s=round(time.perf_counter() - wall, 3),
            model_training=self.model.training, teacher_training=self.model.teacher.training,
            selection=[getattr(self.model, "selection_strategy", None), getattr(self.model, "selection_ratio", None)],
        )
        if result.get("hf_train_runtime"):
            result["hf_rows_per_s"] = round(rows / result["hf_train_runtime"], 2)
        _write_json(args.result, result)
        return out

    transformers.Trainer.train = train
    import runpy

    runpy.run_path(str(script), run_name="__main__")
    if "rows" not in result:
        sys.exit("[authors_speed] their script ended without training")
    # their final evaluation has run by now: add its result
    evals = sorted(Path(_arg(script_args, "--output_dir")).glob("*eval_results.json"))
    if evals:
        result["eval"] = json.loads(evals[-1].read_text())
        _write_json(args.result, result)


def _arg(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ------------------------------------------------------------------------------------------------------ loop_timer
def loop_timer(out: str):
    """A Lightning callback (for DKD's ``+callbacks.<name>._target_=authors_speed.loop_timer +callbacks.<name>.out=``)
    timing what the Timer above times on HF's side: the step (on_train_batch_start to on_train_batch_end, DKD's own
    Throughput window) and the loop (the first epoch's start to the last batch's end, validation excluded)."""
    import pytorch_lightning as pl
    import torch

    class LoopTimer(pl.Callback):
        def __init__(self):
            self.step_s, self.steps, self.rows, self.loop_start, self.last_end, self._t = 0.0, 0, 0, None, None, 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            if self.loop_start is None:
                self.loop_start = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.last_end = time.perf_counter()
            self.step_s += self.last_end - self._t
            self.steps += 1
            self.rows += len(batch["labels"])

        def on_train_end(self, trainer, pl_module):
            _write_json(out, {"side": "dkd", "threads": torch.get_num_threads(), "torch": torch.__version__,
                              "precision": str(trainer.precision), "rows": self.rows, "steps": self.steps,
                              "step_s": round(self.step_s, 3), "loop_s": round(self.last_end - self.loop_start, 3)})

    return LoopTimer()


# ---------------------------------------------------------------------------------------------------- probe/verify
def probe(args) -> None:
    """(the authors' venv) Their tokenisation of the training rows, and the teacher's and the student's logits on the
    first ``n`` rows with the models built as their dynamic_data.py builds them (eval mode), saved for ``verify``."""
    import numpy as np
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.authors_dir)
    from models.student import DynamicDataKDForSequenceClassification

    with open(args.data, encoding="utf-8") as fh:
        texts = [json.loads(line)["sentence"] for line in fh]
    tok = AutoTokenizer.from_pretrained(args.student, use_fast=False)
    enc = tok(texts, padding="max_length", max_length=128, truncation=True)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        args.teacher, config=AutoConfig.from_pretrained(args.teacher, num_labels=2))
    config = AutoConfig.from_pretrained(args.student, num_labels=2)
    config.num_hidden_layers = 3
    model = DynamicDataKDForSequenceClassification.from_pretrained(args.student, config=config, teacher=teacher,
                                                                   selection_strategy="entropy", selection_ratio=0.1)
    model.eval()
    n = min(args.n, len(texts))
    batch = {k: torch.tensor(v[:n]) for k, v in enc.items()}
    with torch.no_grad():
        t = teacher(**batch)[0].numpy()
        s = model(**batch)[0].numpy()
    ids = [[i for i, m in zip(row, mask) if m] for row, mask in zip(enc["input_ids"], enc["attention_mask"])]
    np.savez(args.out, teacher=t, student=s, ids=np.array(json.dumps(ids)), tokenizer=type(tok).__name__)


def verify(args) -> None:
    """(DKD's environment) The same rows through DKD's tokenizer, teacher and student initialisation: token ids must be
    equal, logits equal up to float rounding (DKD pads to the batch's longest row, theirs to 128)."""
    import numpy as np
    import pytorch_lightning as pl
    import torch
    from hydra import compose, initialize_config_dir

    from dkd.models import load_classifier, load_tokenizer, truncate
    from dkd.tasks import get_task

    torch.set_num_threads(args.threads)
    theirs = np.load(args.probe)
    their_ids = json.loads(str(theirs["ids"]))
    with initialize_config_dir(config_dir=str(Path(args.repo) / "conf"), version_base=None):
        cfg = compose(config_name="train")
    s = cfg.backbone.student
    _, rows = _read_tsv(Path(args.data))
    texts = [r[0] for r in rows]
    tok = load_tokenizer(s.name_or_path)
    ours = tok(texts, max_length=128, truncation=True)["input_ids"]
    differ = [i for i, (a, b) in enumerate(zip(ours, their_ids)) if a != b]
    print(f"tokens: {len(texts)} rows, {len(differ)} tokenised differently by DKD ({type(tok).__name__}) and theirs "
          f"({theirs['tokenizer']}){': rows ' + str(differ[:10]) if differ else ''}")
    spec = get_task("sst2")
    teacher = load_classifier(args.teacher, len(spec.labels)).eval()
    pl.seed_everything(args.seed, workers=True, verbose=False)
    student = truncate(load_classifier(s.name_or_path, len(spec.labels), list(spec.labels)), int(s.layers)).eval()
    n = len(theirs["teacher"])
    batch = tok(texts[:n], max_length=128, truncation=True, padding="longest", return_tensors="pt")
    with torch.no_grad():
        dt = np.abs(teacher(**batch).logits.numpy() - theirs["teacher"]).max()
        ds = np.abs(student(**batch).logits.numpy() - theirs["student"]).max()
    print(f"logits on {n} rows, max |DKD - theirs|: teacher {dt:.2e}, student initialisation {ds:.2e}")
    if differ or dt > 1e-4 or ds > 1e-4:
        sys.exit("[authors_speed] the two sides do not see the same tokens or models (see above)")


# -------------------------------------------------------------------------------------------------------- annotate
def annotate(args) -> None:
    """Add key=value pairs (the run's name, label, command) to a result file."""
    path = Path(args.result)
    if not path.is_file():
        sys.exit(f"{path}: no result (the run failed before the end of its training loop)")
    r = json.loads(path.read_text())
    r.update(pair.split("=", 1) for pair in args.pairs)
    _write_json(path, r)


# --------------------------------------------------------------------------------------------------------- summary
def summary(args) -> None:
    runs = []
    for path in sorted(Path(args.results).glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("side") == "dkd" and Path(r.get("metrics", "")).is_file():
            m = json.loads(Path(r["metrics"]).read_text())
            r["dkd_train_examples_per_s"] = m.get("train_examples_per_s")
            r["dev"] = m.get("dev")
            r["teacher_cache"] = m.get("teacher_cache")
        r["loop_per_s"] = r["rows"] / r["loop_s"] if r.get("loop_s") else None
        r["step_per_s"] = r["rows"] / r["step_s"] if r.get("step_s") else None
        runs.append(r)
    if not runs:
        sys.exit(f"no results in {args.results}")
    labels = {"authors": "authors' dynamic_data.py", "dkd": "DKD"}
    groups: dict[tuple, list] = {}
    for r in runs:
        groups.setdefault((r["side"], r["label"]), []).append(r)

    def med(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    base = groups.get(("authors", "fp32"))
    base_loop, base_step = (med(base, "loop_per_s"), med(base, "step_per_s")) if base else (None, None)
    print(f"\n{args.title}\n")
    print("| side | precision | command | examples/s (loop) | ratio to theirs | examples/s (steps only) | ratio to "
          "theirs (steps) | runs |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for (side, label), rs in groups.items():
        loop, step = med(rs, "loop_per_s"), med(rs, "step_per_s")
        ratio = f"{loop / base_loop:.2f}×" if base_loop and loop else "—"
        ratio_s = f"{step / base_step:.2f}×" if base_step and step else "—"
        print(f"| {labels[side]} | {label} | `{rs[0]['short']}` | {loop:.1f} | {ratio} | {step:.1f} | {ratio_s} | "
              f"{len(rs)} |")
    print("\nPer run (examples/s; `native` = each side's own figure: HF 4.5.1's train_runtime as rows / runtime, "
          "DKD's metrics.json train_examples_per_s):\n")
    for r in runs:
        native = (f"HF rows/train_runtime {r.get('hf_rows_per_s')} (its train_samples_per_second "
                  f"{r.get('hf_train_samples_per_second')} is steps/s in 4.5.1)" if r["side"] == "authors"
                  else f"train_examples_per_s {r.get('dkd_train_examples_per_s')}")
        extra = (f"; dev {r['eval'].get('eval_accuracy')}" if r.get("eval") else "") + \
                (f"; dev {r['dev']}" if r.get("dev") else "") + \
                (f"; teacher cache {r['teacher_cache']}" if r.get("teacher_cache") else "")
        print(f"- {r['name']}: loop {r['loop_per_s']:.1f}, steps {r['step_per_s']:.1f}, {r['rows']} rows in "
              f"{r['steps']} steps, loop {r['loop_s']} s, steps {r['step_s']} s, threads {r.get('threads')}; "
              f"native: {native}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--repo", required=True)
    p.add_argument("--sst2", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--dev-rows", type=int, default=None)
    p.add_argument("--teacher", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    a = sub.add_parser("authors")
    a.add_argument("--threads", type=int, required=True)
    a.add_argument("--result", required=True)
    b = sub.add_parser("probe")
    for name in ("--authors-dir", "--student", "--teacher", "--data", "--out"):
        b.add_argument(name, required=True)
    b.add_argument("--n", type=int, default=256)
    b.add_argument("--threads", type=int, default=1)
    v = sub.add_parser("verify")
    for name in ("--repo", "--teacher", "--data", "--probe"):
        v.add_argument(name, required=True)
    v.add_argument("--seed", type=int, default=1)
    v.add_argument("--threads", type=int, default=1)
    n = sub.add_parser("annotate")
    n.add_argument("result")
    n.add_argument("pairs", nargs="*", help="key=value")
    s = sub.add_parser("summary")
    s.add_argument("--results", required=True)
    s.add_argument("--title", default="")
    argv = sys.argv[1:]
    if argv and argv[0] == "authors" and "--" in argv:
        cut = argv.index("--")
        args = parser.parse_args(argv[:cut])
        return authors(args, argv[cut + 1:])
    args = parser.parse_args(argv)
    {"prepare": prepare, "probe": probe, "verify": verify, "summary": summary, "annotate": annotate}[args.cmd](args)


if __name__ == "__main__":
    main()
