"""The teacher check of finding 1 (docs/reproduction.md): is the larger teacher the better one? Each teacher of a
finished distillation job is scored once on the task's verdict split (its labelled test split, SST-5's; dev where the
task has none), and larger − smaller is given in accuracy points with a 95% paired bootstrap interval over the
examples (BCa, ``scipy.stats.bootstrap``). One fine-tuning of each teacher: the interval covers the draw of the
examples, not a refit. The larger counts as the better teacher when the interval lies above 0; claim 1b (the smaller
teacher's student beats the larger's) is read with this check beside it.

    python -m dkd.studies.teacher_check <job folder> --save docs/repro/adoption_teachers_sst5.json
    python -m dkd.studies.teacher_check docs/repro/adoption_teachers_sst5.json     # the table again, from the JSON

Each teacher's weights are identified by the sha256 of their ``model.safetensors``, so that a teacher fine-tuned
again elsewhere can be told apart from the one the jobs learnt from.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from dkd.cpu import cpu_threads
from dkd.data import load_test_split
from dkd.errors import UserError
from dkd.models import load_classifier, load_tokenizer, weights_digest
from dkd.ship.evaluate import labels_digest, predict
from dkd.ship.finished import run_config, run_dev_splits


def score_teachers(job: Path) -> dict:
    """Each teacher of ``job`` on the verdict split: accuracy, per-example right answers, size and weights' sha256,
    the teachers ordered from the smallest to the largest."""
    metrics, cfg = run_config(job)
    spec, dev = run_dev_splits(cfg)
    if spec.is_regression:
        raise UserError(f"{job}: task {spec.name} is a regression; the teacher check compares accuracies.")
    name, split = ("test", load_test_split(spec, cfg.task.get("data_dir"))) if spec.test_file else \
        next(iter(dev.items()))
    if len(metrics.get("teachers", {})) < 2:
        raise UserError(f"{job}: its run learnt from {list(metrics.get('teachers', {}))}; the teacher check needs a "
                        f"job of two teachers (teacher=both).")
    labels = torch.tensor(split.labels)
    teachers = []
    for role, teacher in metrics["teachers"].items():
        folder = Path(teacher["dir"])
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise UserError(f"{job}: teacher {role} ({folder}) has no model.safetensors here; the check scores the "
                            f"teachers the job learnt from (their store folder on this machine).")
        digest = weights_digest(folder)
        if teacher.get("weights", digest) != digest:  # recorded by jobs of 55ae3a4 on
            raise UserError(f"{job}: teacher {role} in {folder} is not the one the job learnt from (weights' sha256 "
                            f"{digest}, recorded {teacher['weights']}): fine-tuned again since, with other weights.")
        model = load_classifier(str(folder), spec.num_labels).eval()
        logits = predict(model, load_tokenizer(str(folder)), split, cfg.data, False, f"{role} {name}")
        correct = (logits.argmax(-1) == labels).int().tolist()
        teachers.append({"role": role, "folder": folder.name, "parameters": sum(p.numel() for p in model.parameters()),
                         "sha256": digest, "dev": teacher.get("dev"), "accuracy": float(np.mean(correct)),
                         "correct": correct})
    teachers.sort(key=lambda t: t["parameters"])
    return {"job": str(job), "task": spec.name, "split": name, "labels_digest": labels_digest(split.labels),
            "teachers": teachers}


def check(scored: dict) -> dict:
    """Larger − smaller on the split, in accuracy (a fraction), with its 95% paired bootstrap interval."""
    small, large = scored["teachers"][0], scored["teachers"][-1]
    d = np.asarray(large["correct"], dtype=float) - np.asarray(small["correct"], dtype=float)
    if np.all(d == d[0]):  # right on the same examples: every resample gives d̄ (BCa would give NaN)
        low = high = float(d[0])
    else:
        ci = stats.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=10_000, method="BCa", batch=1000,
                             random_state=np.random.default_rng(0)).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {"smaller": small["role"], "larger": large["role"], "d": float(d.mean()), "low": low, "high": high,
            "larger_is_better": low > 0}


def markdown(scored: dict) -> str:
    result = check(scored)
    pts = lambda x: f"{100 * x:+.2f}"  # noqa: E731 - differences in points
    lines = [f"Teacher check, {scored['task']} {scored['split']} ({len(scored['teachers'][0]['correct'])} examples):",
             "", "| teacher | folder | parameters | dev | " + f"{scored['split']} accuracy | weights' sha256 |",
             "|---|---|---|---|---|---|"]
    for t in scored["teachers"]:
        dev = (t.get("dev") or {}).get("dev/score")
        lines.append(f"| {t['role']} | {t['folder']} | {t['parameters'] / 1e6:.1f}M | "
                     f"{'–' if dev is None else f'{100 * dev:.2f}'} | {100 * t['accuracy']:.2f} | `{t['sha256']}` |")
    verdict = ("the larger is the better teacher" if result["larger_is_better"] else
               "the larger is not shown to be the better teacher: claim 1b compares these two models")
    lines += ["", f"{result['larger']} − {result['smaller']}: {pts(result['d'])} points, 95% paired bootstrap "
                  f"[{pts(result['low'])}, {pts(result['high'])}] over the examples: {verdict}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dkd.studies.teacher_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a finished job of two teachers, or a JSON saved by --save")
    parser.add_argument("--save", type=Path, help="keep the teachers' scores as JSON (docs/repro/…)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    try:
        if args.source.is_file():
            try:
                scored = json.loads(args.source.read_text())
                scored["teachers"]
            except (ValueError, KeyError) as err:
                raise UserError(f"{args.source}: not a teacher check saved by --save ({err}).") from None
        else:
            with cpu_threads(args.threads), torch.no_grad():
                scored = score_teachers(args.source)
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text(json.dumps(scored))
        print(markdown(scored), end="")
    except UserError as err:
        raise SystemExit(f"python -m dkd.studies.teacher_check: {err}") from None


if __name__ == "__main__":
    main()
