"""The gold labels a finished job was scored against, read again from the task's files: a saved job keeps per example
only whether it was right, so that which classes a student gets right (:func:`class_recall`) and whether it predicts
one class (:mod:`dkd.studies.backfill`) need the labels beside it.

The folder is ``data_dir`` if given, else the one the evaluation read: moved to this checkout where it lay under the
job's project root and the moved folder exists (a study JSON saved on another machine names that machine's folders:
``/work/f2/../shared/data/sst5`` is ``<this checkout>/../shared/data/sst5`` here), else as recorded. The labels read
are checked against the digest recorded at evaluation: other labels are an error, never a silent substitute.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from omegaconf import OmegaConf

from dkd.data import read_split
from dkd.errors import UserError
from dkd.paths import ROOT
from dkd.ship.evaluate import labels_digest
from dkd.tasks import task_spec


class NoLabels(UserError):
    """The task's files are not where the job's evaluation read them (nor in ``data_dir``)."""


def split_labels(config: dict, split: str, data_dir: Path) -> list[int]:
    """The labels of a task's ``split`` (dev or test) as the job's task reads them, from ``data_dir``."""
    spec = task_spec(OmegaConf.create(config))
    path = data_dir / (spec.test_file if split == "test" else spec.dev_files[split])
    if not path.is_file():
        raise NoLabels(f"{path}: no such file (the {spec.name} {split} split); give --data-dir the task's folder.")
    return read_split(spec, path).labels


def recorded_folder(job: dict, split: str) -> Path:
    """The folder ``split`` was read from at evaluation: under this checkout where it lay under the job's root and
    is there, else as recorded."""
    source = job["predictions"][split]["source"]
    if source.startswith("hub "):  # read from the hub at evaluation: no local file to read again
        raise NoLabels(f"job {job['job']}, split {split}: it was evaluated on the hub's copy ({source}); give "
                       f"--data-dir a local folder with the task's files.")
    folder = Path(source).parent
    root = (job["config"].get("paths") or {}).get("root_dir")
    if root and folder.is_relative_to(root):
        moved = ROOT / folder.relative_to(root)
        if moved.is_dir() or not folder.is_dir():
            return moved
    return folder


class Labels:
    """The labels of each (folder, task, split), read once and checked against each job's recorded digest."""

    def __init__(self, data_dir: Path | None = None):
        self.data_dir = data_dir
        self._read: dict[tuple[str, str, str], list[int]] = {}

    def of(self, job: dict, split: str) -> list[int]:
        record = job["predictions"][split]
        folder = self.data_dir or recorded_folder(job, split)
        key = (str(folder), job["config"]["task"]["name"], split)
        if key not in self._read:
            self._read[key] = split_labels(job["config"], split, folder)
        labels = self._read[key]
        if labels_digest(labels) != record["labels_digest"]:
            raise UserError(f"job {job['job']}, split {split}: the labels in {folder} are not the ones it was "
                            f"evaluated on (digest {labels_digest(labels)}, recorded {record['labels_digest']}); "
                            f"give --data-dir the folder it was evaluated on.")
        return labels


def recall(correct: list[int], labels: list[int]) -> dict[int, float]:
    """Per gold class c: the share of its examples the model labels right, (right ∧ label = c) / (label = c)."""
    counts: dict[int, list[int]] = {}
    for ok, label in zip(correct, labels, strict=True):
        counts.setdefault(label, [0, 0])[0] += bool(ok)
        counts[label][1] += 1
    return {c: right / n for c, (right, n) in sorted(counts.items())}


def class_recall(jobs_of: dict[str, list[dict]], split: str, labels: Labels) -> dict:
    """Per variant (``jobs_of``: label → its jobs), the recall of each class on ``split``, mean over its jobs;
    ``examples``: how many examples each class has there."""
    out, examples = {}, {}
    for variant, jobs in jobs_of.items():
        per_job = []
        for job in jobs:
            gold = labels.of(job, split)
            if not examples:  # every job's labels are these (one evaluation set per split, checked by the study)
                examples = {c: gold.count(c) for c in sorted(set(gold))}
            per_job.append(recall(job["predictions"][split]["correct"], gold))
        out[variant] = {c: statistics.mean(r[c] for r in per_job) for c in per_job[0]}
    return {"split": split, "examples": examples, "variants": out}
