"""The multirun summary: settings grouped over seeds, mean ± sample std, wall times and FLOPs kept per job."""
import json
from pathlib import Path

import pytest

from dkd.studies.report import collect, main, sweep_table


def job(folder: Path, num: int, overrides: list[str], score: float, wall: float, classes: int | None = 2) -> None:
    (folder / str(num) / ".hydra").mkdir(parents=True)
    (folder / str(num) / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    flops = {"gflops_per_example": {"total": 2.0, "teacher": 1.0, "teacher_spent": 0.5}, "ratio_to_full_kd": 0.25}
    (folder / str(num) / "metrics.json").write_text(json.dumps(
        {"dev": {"dev/score": score}, "wall_time_s": wall, "flops": flops,
         **({"predicted_classes": {"dev": classes}} if classes else {})}))


def test_sweep_table_groups_over_seeds(tmp_path, capsys):
    scores = {("none", 42): 0.80, ("none", 1): 0.82, ("none", 2): 0.84, ("entropy", 42): 0.70, ("entropy", 1): 0.71}
    for num, ((sampler, seed), score) in enumerate(scores.items()):
        job(tmp_path, num, [f"sampler={sampler}", "sampler.ratio=0.1", f"seed={seed}", "task=mrpc"], score, 10.0 + num)
    (tmp_path / "9" / ".hydra").mkdir(parents=True)  # a job that did not finish is left out
    rows = collect(tmp_path)
    assert len(rows) == 5
    table, summary = sweep_table(rows)
    none, entropy = summary
    assert (none["sampler"], none["n"], none["mean"]) == ("none", 3, pytest.approx(0.82))
    assert none["std"] == pytest.approx(0.02)  # sample std of 0.80, 0.82, 0.84
    assert entropy["n"] == 2 and entropy["wall_s"] == [13.0, 14.0] and "sampler.ratio" not in entropy
    assert ("| none | 3 | 0.8200 ± 0.0200 | 0.8 / 0.82 / 0.84 | 0/3 | 10 / 11 / 12 | 2 / 2 / 2 | 0.25 / 0.25 / 0.25 | "
            "1 / 1 / 1 | 0.5 / 0.5 / 0.5 |") in table
    main([str(tmp_path), "--json", str(tmp_path / "s.json")])
    assert "5 finished jobs" in capsys.readouterr().out and json.loads((tmp_path / "s.json").read_text())[0]["n"] == 3


def test_a_collapsed_job_is_shown_and_counted_per_setting(tmp_path):
    """A job whose model predicts one class on dev is marked where its score stands and counted per setting; a job
    written before the count existed is unknown, not healthy."""
    for num, (sampler, seed, classes) in enumerate([("entropy", 1, 1), ("entropy", 2, 2), ("entropy", 3, None),
                                                    ("none", 1, 2)]):
        job(tmp_path, num, [f"sampler={sampler}", f"seed={seed}"], 0.5 + num / 100, 10.0, classes)
    table, summary = sweep_table(collect(tmp_path))
    assert "| entropy | 3 | " in table and "| 0.5 (1 class) / 0.51 / 0.52 | 1/2 |" in table
    assert "| none | 1 | 0.5300 ± 0.0000 | 0.53 | 0/1 |" in table
    assert summary[0]["collapsed"] == {"1": True, "2": False, "3": None}
