"""Jobs evaluated before the classes were counted: whether their model predicts one class, from the right answers and
the labels (dkd.studies.backfill)."""
import copy
import json
import os
from pathlib import Path

import pytest

from dkd.errors import UserError
from dkd.ship.evaluate import labels_digest
from dkd.studies.backfill import backfill, one_class
from dkd.studies.design import STUDIES
from dkd.studies.jobs import collapsed_on, with_current_targets
from dkd.studies.reproduction import summarise

ROOT = Path(__file__).resolve().parents[1]


def test_one_class_only_when_the_right_answers_are_exactly_one_class():
    labels = [0, 1, 2, 1, 0, 1]
    assert one_class([0, 1, 0, 1, 0, 1], labels)  # right on every 1 and nothing else: what predicting 1 gives
    assert not one_class([0, 1, 0, 0, 0, 1], labels)  # wrong on a 1: it predicted something else there
    assert not one_class([1, 1, 0, 1, 0, 1], labels)  # right on a 0 and on the 1s: two classes at least
    assert one_class([0] * 6, labels) is None  # right on nothing: one class absent from the split, or many


def test_backfill_fills_the_splits_without_a_count_and_checks_the_labels(tmp_path):
    data = tmp_path / "sst5"
    data.mkdir()
    rows = [("good", 3), ("bad", 1), ("fine", 3), ("awful", 0)]
    for split in ("dev", "test"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    labels = [y for _, y in rows]
    record = lambda correct: {"source": str(data / "x.tsv"), "labels_digest": labels_digest(labels),  # noqa: E731
                              "correct": correct}
    jobs = [{"job": "collapsed", "config": {"task": {"name": "sst5"}},
             "predictions": {"dev": record([1, 0, 1, 0]), "test": {**record([1, 0, 1, 0]), "predicted_classes": 2}}},
            {"job": "healthy", "config": {"task": {"name": "sst5"}},
             "predictions": {"dev": record([1, 1, 0, 0])}}]
    saved = tmp_path / "study.json"
    saved.write_text(json.dumps({"study": "selection", "jobs": jobs}))
    assert backfill(saved) == 2  # the split with a count of its own is left as it is
    filled = json.loads(saved.read_text())["jobs"]
    assert filled[0]["predictions"]["dev"]["one_class"] is True and "one_class" not in filled[0]["predictions"]["test"]
    assert collapsed_on({**filled[0], "metrics": {}}, "dev") is True
    assert collapsed_on({**filled[0], "metrics": {}}, "test") is False  # its own count wins
    assert collapsed_on({**filled[1], "metrics": {}}, "dev") is False
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t0\n" for t, _ in rows))
    saved.write_text(json.dumps({"study": "selection", "jobs": jobs}))
    with pytest.raises(UserError, match="not the ones it was evaluated on"):
        backfill(saved, data)


def test_backfill_restores_the_committed_collapse_flags_and_summary(tmp_path):
    """The v1 objective study, its flags taken out, filled again from SST-5's labels: the jobs come back as committed,
    and the saved summary is the one made from them."""
    sst5 = Path(os.environ.get("SST5_DIR", ROOT.parent / "shared" / "data" / "sst5"))
    if not (sst5 / "test.tsv").is_file():
        pytest.skip(f"no SST-5 files in {sst5} (set SST5_DIR)")
    committed = json.loads((ROOT / "docs" / "repro" / "objective_sst5.json").read_text())
    stripped = copy.deepcopy(committed)
    for job in stripped["jobs"]:
        for record in job["predictions"].values():
            del record["one_class"], record["one_class_from"]
    stripped["summary"] = None
    saved = tmp_path / "objective.json"
    saved.write_text(json.dumps(stripped))
    assert backfill(saved, sst5) == 2 * len(committed["jobs"])
    filled = json.loads(saved.read_text())
    assert filled["jobs"] == committed["jobs"]
    made = summarise(STUDIES["objective"], with_current_targets(committed["jobs"]))
    assert filled["summary"] == json.loads(json.dumps(made))
    assert backfill(saved, sst5) == 0  # nothing left to fill
