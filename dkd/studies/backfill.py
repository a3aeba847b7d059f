"""Whether a job's model predicts one class, for jobs evaluated before ``python -m dkd.ship.evaluate`` counted the
classes it predicts, recovered from each split's right answers and labels into a saved study JSON (``--study …
--save``):

    python -m dkd.studies.backfill docs/repro/objective_sst5.json [--data-dir ../shared/data/sst5]

A model that predicts class c for every example is right exactly on the examples labelled c. So a model whose right
answers are not one class's examples predicts two classes or more (certain); one whose right answers are exactly the
examples of one class c is recorded as predicting one class (inferred: a model of several classes would have to be
right on every example of c and on no other example); one right on nothing is not told (null). Each split gets
``one_class`` (true, false or null) and ``one_class_from: "right answers and labels"``; a split that already counts
its classes (``predicted_classes``) or was filled before is left as it is. The labels are read from the task's files
and checked against the digest the evaluation recorded (:mod:`dkd.studies.labels`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dkd.errors import UserError
from dkd.studies.design import STUDIES
from dkd.studies.jobs import with_current_targets
from dkd.studies.labels import Labels
from dkd.studies.reproduction import summarise

FROM = "right answers and labels"


def one_class(correct: list[int], labels: list[int]) -> bool | None:
    """Whether the right answers are exactly the examples of one class (see the module's text); None where none is
    right (one class absent from the split would do that too)."""
    right = {label for ok, label in zip(correct, labels) if ok}
    if not right:
        return None
    if len(right) > 1:
        return False
    (c,) = right
    return all(bool(ok) == (label == c) for ok, label in zip(correct, labels))


def backfill(saved: Path, data_dir: Path | None = None) -> int:
    """Adds ``one_class`` to every split of every job in ``saved`` that has right answers but neither a class count
    nor ``one_class``; returns how many splits it filled (the file is written only when it filled one)."""
    data = json.loads(saved.read_text())
    labels = Labels(data_dir)
    filled = 0
    for job in data["jobs"]:
        for split, record in job.get("predictions", {}).items():
            if "predicted_classes" in record or "one_class" in record or "correct" not in record:
                continue
            record["one_class"], record["one_class_from"] = one_class(record["correct"], labels.of(job, split)), FROM
            filled += 1
    if not filled:
        return 0
    if "summary" in data:  # the saved summary's collapse flags come from the jobs: made again
        data["summary"] = summarise(STUDIES[data["study"]], with_current_targets(data["jobs"]))
    saved.write_text(json.dumps(data))
    return filled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dkd.studies.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("saved", nargs="+", help="study JSONs saved by python -m dkd.studies.report --study … --save")
    parser.add_argument("--data-dir", default=None, help="the task's data folder (default: where each split was "
                                                          "read at evaluation, as recorded, under this checkout)")
    args = parser.parse_args(argv)
    try:
        for path in map(Path, args.saved):
            print(f"{path}: {backfill(path, args.data_dir and Path(args.data_dir))} splits filled")
    except UserError as err:
        raise SystemExit(f"python -m dkd.studies.backfill: {err}") from None


if __name__ == "__main__":
    main()
