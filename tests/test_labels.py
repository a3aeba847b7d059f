"""Which classes a study's students get right: the labels read again beside the saved right answers, from the folder
the evaluation read moved to this checkout (dkd.studies.labels), and the report's table of recall per class."""
from pathlib import Path

import pytest

from dkd.errors import UserError
from dkd.paths import ROOT
from dkd.ship.evaluate import labels_digest
from dkd.studies.design import STUDIES
from dkd.studies.labels import Labels, NoLabels, class_recall, recall, recorded_folder
from dkd.studies.plots import plot_classes
from dkd.studies.reproduction import asked_shares, per_class, summarise
from dkd.studies.tables import markdown
from tests.test_reproduction import job

ROWS = [("good", 3), ("bad", 1), ("fine", 3), ("awful", 0), ("great", 4)]
LABELS = [y for _, y in ROWS]


def test_recall_is_the_share_of_each_class_labelled_right():
    # class 0: its one example wrong; class 1: right; class 3: one of two; class 4: right
    assert recall([1, 1, 0, 0, 1], LABELS) == {0: 0.0, 1: 1.0, 3: 0.5, 4: 1.0}
    with pytest.raises(ValueError):  # answers and labels of different splits never pair silently
        recall([1, 1, 0], LABELS)


def test_the_recorded_folder_moves_to_this_checkout_when_it_lay_under_the_jobs_root():
    made_elsewhere = {"predictions": {"test": {"source": "/work/f2/../shared/data/sst5/test.tsv"}},
                      "config": {"paths": {"root_dir": "/work/f2"}}}
    assert recorded_folder(made_elsewhere, "test") == ROOT / ".." / "shared" / "data" / "sst5"
    outside = {"predictions": {"test": {"source": "/data/sst5/test.tsv"}},
               "config": {"paths": {"root_dir": "/work/f2"}}}
    assert recorded_folder(outside, "test") == Path("/data/sst5")  # not under the root: as recorded


def test_the_recorded_folder_stays_where_this_checkout_lacks_it(tmp_path):
    """Another checkout on this machine with the data inside it: the folder as recorded, which is there; a split read
    from the hub has no file to read again."""
    (tmp_path / "other" / "data-only-there").mkdir(parents=True)
    job_ = {"job": "j", "predictions": {"test": {"source": str(tmp_path / "other" / "data-only-there" / "test.tsv")}},
            "config": {"paths": {"root_dir": str(tmp_path / "other")}}}
    assert recorded_folder(job_, "test") == tmp_path / "other" / "data-only-there"
    job_["predictions"]["test"]["source"] = "hub SetFit/sst5/:test"
    with pytest.raises(NoLabels, match="the hub's copy"):
        recorded_folder(job_, "test")


def scored(tmp_path, correct: dict[str, list[list[int]]]) -> list[dict]:
    """Jobs of the selection study (variant → per seed, right answers on a five-row test split in ``tmp_path``)."""
    (tmp_path / "test.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in ROWS))
    jobs = []
    for sampler, per_seed in correct.items():
        for seed, right in zip((42, 1), per_seed):
            j = job(sampler, seed, 0.4, test=(sum(right) / len(right), 3))
            j["config"]["task"] = {"name": "sst5"}
            j["predictions"]["test"].update({"source": str(tmp_path / "test.tsv"), "correct": right,
                                             "labels_digest": labels_digest(LABELS)})
            jobs.append(j)
    return jobs


def test_the_report_shows_each_variants_recall_per_class_on_the_verdict_split(tmp_path):
    jobs = scored(tmp_path, {"none": [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]], "entropy": [[1, 1, 1, 0, 0]] * 2})
    classes = class_recall({"full KD": jobs[:2], "entropy r=0.1": jobs[2:]}, "test", Labels())
    assert classes["examples"] == {0: 1, 1: 1, 3: 2, 4: 1}
    assert classes["variants"]["full KD"] == {0: 0.5, 1: 1.0, 3: 0.75, 4: 1.0}  # mean of the two seeds' recalls
    assert classes["variants"]["entropy r=0.1"] == {0: 0.0, 1: 1.0, 3: 1.0, 4: 0.0}
    study = STUDIES["selection"]
    assert per_class(study, jobs, "test", None) == classes
    assert asked_shares(study, jobs) == {}  # no job logged its KD rows' classes
    # the KD rows' classes, where every job of a variant logged them (sampler_class_<c>): entropy's, not full KD's
    for j, shares in zip(jobs[2:], ({0: 0.5, 1: 0.5}, {0: 0.25, 1: 0.5, 2: 0.25})):
        j["metrics"]["decisions"].update({f"sampler_class_{c}": v for c, v in shares.items()})
    jobs[0]["metrics"]["decisions"]["sampler_class_0"] = 1.0
    asked = asked_shares(study, jobs)
    assert asked == {"entropy r=0.1": {0: 0.375, 1: 0.5, 2: 0.125}}  # a class a seed never asked: 0
    table = "| variant | class 0 | class 1 | class 2 |\n|---|---|---|---|\n| entropy r=0.1 | 37.5 | 50.0 | 12.5 |"
    assert table in markdown(summarise(study, jobs), classes, asked)
    assert table in markdown(summarise(study, jobs), "not shown, the labels are missing", asked)  # not tied to them
    text = markdown(summarise(study, jobs), classes)
    assert ("| variant | class 0 (n = 1) | class 1 (n = 1) | class 3 (n = 2) | class 4 (n = 1) | mean over classes |"
            in text)
    assert "| entropy r=0.1 | 0.0 | 100.0 | 100.0 | 0.0 | 50.0 |" in text  # the balanced accuracy
    png = plot_classes(classes, "selection", tmp_path / "classes.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_labels_are_said_in_the_report_and_other_labels_refused(tmp_path):
    jobs = scored(tmp_path, {"none": [[1, 1, 1, 1, 1]] * 2})
    study = STUDIES["selection"]
    missing = per_class(study, jobs, "test", tmp_path / "elsewhere")
    assert missing.startswith("not shown, the labels are missing:") and "give --data-dir" in missing
    assert "Recall per class: not shown" in markdown(summarise(study, jobs), missing)
    with pytest.raises(NoLabels):
        Labels(tmp_path / "elsewhere").of(jobs[0], "test")
    unscored = [jobs[0], {**jobs[1], "predictions": {}}]
    said = per_class(study, unscored, "test", None)
    assert said == f"not shown, jobs without right answers on test: {jobs[1]['job']}"
    assert per_class(study, [{**j, "predictions": {}} for j in jobs], "test", None) is None  # none scored there
    (tmp_path / "test.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t2\n" for t, _ in ROWS))
    with pytest.raises(UserError, match="not the ones it was evaluated on"):
        Labels().of(jobs[0], "test")
    other = per_class(study, jobs, "test", None)  # the report says so and still makes its verdicts
    assert other.startswith("not shown, job ") and "not the ones it was evaluated on" in other
