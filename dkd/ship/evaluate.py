"""Each example's prediction of finished distillation runs, on the dev split(s) and on the task's labelled test split
where it has one (SST-5): ``python -m dkd.ship.evaluate <run or multirun folders>`` writes ``predictions.json`` beside
each job's ``metrics.json``.

The reproduction report reads them for a paired bootstrap over examples and for the test column. The test split is
read only here, after training, never to choose a model. The exported student is the best dev checkpoint, so its dev
metrics must equal the run's: a difference (another data file, another tokenizer) is an error, not a warning.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dkd.cpu import cpu_threads
from dkd.data import Collator, EncodedSplit, fixed_width, load_test_split, tokenize
from dkd.errors import UserError
from dkd.metrics import TaskMetrics
from dkd.models import load_classifier, load_tokenizer
from dkd.ship.finished import run_config, run_dev_splits

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # dev metrics recomputed here against metrics.json's (float32 sums in another batch order)


def labels_digest(labels: list) -> str:
    return hashlib.sha1(json.dumps(labels).encode()).hexdigest()[:16]


@torch.no_grad()
def predict(model, tokenizer, split, data_cfg, regression: bool, desc: str) -> torch.Tensor:
    """Logits of ``model`` for every example of ``split``, batched and padded as the run's dev evaluation batched them:
    in file order, ``data.eval_batch_size`` rows a batch, each as wide as its longest row (or ``data.max_seq_length``
    under ``data.padding=max_length``). Under bf16 a row's logits depend on the width of its batch, so only the run's
    own batches reproduce its dev score exactly."""
    data = EncodedSplit({"student": tokenize(split, tokenizer, data_cfg.max_seq_length, desc)}, split.labels)
    width = fixed_width(data_cfg.get("padding", "longest"), data_cfg.max_seq_length)
    loader = DataLoader(data, batch_size=data_cfg.eval_batch_size,
                        collate_fn=Collator({"student": tokenizer.pad_token_id or 0}, regression, width))
    bar = tqdm(loader, desc=desc, leave=False, disable=None)  # no bar when the output is a log file
    return torch.cat([model(**b["inputs"]["student"]).logits for b in bar])


def evaluate_job(job: Path, splits: tuple[str, ...] = ("dev", "test")) -> dict:
    """``predictions.json`` of one finished distillation job: per split its metrics, labels' digest and predictions."""
    metrics, cfg = run_config(job)
    spec, data = run_dev_splits(cfg)
    if "test" in splits and spec.test_file:
        data["test"] = load_test_split(spec, cfg.task.get("data_dir"))
    student_dir = Path(metrics["student_dir"])
    if not student_dir.is_dir():
        raise UserError(f"{job}: the exported student {student_dir} is missing; predictions need the model.")
    model = load_classifier(str(student_dir), spec.num_labels).eval()
    tokenizer = load_tokenizer(str(student_dir))
    # in the run's precision, as it scored its dev set: a bf16 run's student is scored under bf16 autocast
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    out = {}
    for name, split in data.items():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = predict(model, tokenizer, split, cfg.data, spec.is_regression, f"{job.name} {name}").float()
        labels = torch.tensor(split.labels, dtype=torch.float if spec.is_regression else torch.long)
        scores = TaskMetrics(list(spec.metrics), [name], spec.num_labels, score=f"{name}/score")
        scores.update(0, logits, labels)
        values = {k: round(v, 6) for k, v in scores.compute().items()}
        preds = logits.squeeze(-1) if spec.is_regression else logits.argmax(-1)
        out[name] = {"source": split.source, "examples": len(split.labels),
                     "labels_digest": labels_digest(split.labels), "metrics": values,
                     "predictions": [round(float(p), 4) if spec.is_regression else int(p) for p in preds]}
        if not spec.is_regression:  # per example, right (1) or wrong (0): the paired bootstrap's input
            out[name]["correct"] = (preds == labels).int().tolist()
            out[name]["predicted_classes"] = scores.predicted_classes()[name]
            if out[name]["predicted_classes"] == 1:
                log.warning("%s: the student predicts one class for every %s example: it has collapsed", job, name)
    for key, value in out.get("dev", {}).get("metrics", {}).items():
        logged = metrics["dev"].get(key)
        if logged is not None and abs(logged - value) > TOLERANCE:
            raise UserError(f"{job}: the exported student scores {key} {value:.4f} here ({'bf16' if bf16 else 'fp32'} "
                            f"on the CPU) but the run logged {logged:.4f} (trainer.precision={cfg.trainer.precision}): "
                            f"the dev data, the model or the precision differs from the run's.")
    (job / "predictions.json").write_text(json.dumps(out))
    return out


def jobs_under(folder: Path) -> list[Path]:
    """A job folder itself, or every finished job of a multirun folder."""
    if (folder / "metrics.json").is_file():
        return [folder]
    jobs = sorted(p.parent for p in folder.glob("*/metrics.json"))
    if not jobs:
        raise UserError(f"{folder}: neither a finished run (metrics.json) nor a multirun folder holding finished jobs.")
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dkd.ship.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run folders or multirun folders")
    parser.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["dev", "test"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-done", action="store_true", help="leave jobs that already have predictions.json")
    args = parser.parse_args(argv)
    try:
        jobs = [job for folder in args.folders for job in jobs_under(folder)]
        with cpu_threads(args.threads):
            for job in jobs:
                if args.skip_done and (job / "predictions.json").is_file():
                    continue
                result = evaluate_job(job, tuple(args.splits))
                print(job, " ".join(f"{k} {v:.4f}" for split in result.values()
                                    for k, v in split["metrics"].items()), flush=True)
    except UserError as err:  # a user's mistake: the message, not a traceback
        raise SystemExit(f"python -m dkd.ship.evaluate: {err}") from None


if __name__ == "__main__":
    main()
