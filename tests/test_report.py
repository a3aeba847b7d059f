"""The multirun summary: settings grouped over seeds, mean ± sample std, wall times and FLOPs kept per job."""
import json
from pathlib import Path

import pytest

from dkd.errors import UserError
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


def test_the_pilot_picks_per_mode_the_best_recipe_without_a_collapse(tmp_path, capsys):
    """Design v2's recipe check: per mode the best mean dev among recipes with no one-class job (efficient mode pools
    its samplers); within half a point, fewer epochs; an incomplete pilot picks nothing."""
    from dkd.studies.report import PILOT_GRID, pilot_picks

    grid = {  # (sampler, lr, epochs): the two pilot seeds' dev scores, classes predicted
        ("none", "7.5e-5", 3): ((0.44, 0.45), (5, 5)), ("none", "2e-4", 3): ((0.46, 0.47), (5, 5)),
        ("none", "7.5e-5", 6): ((0.463, 0.47), (5, 5)), ("none", "2e-4", 6): ((0.50, 0.51), (5, 1)),
        ("random", "7.5e-5", 3): ((0.36, 0.37), (3, 3)), ("entropy", "7.5e-5", 3): ((0.34, 0.36), (3, 2)),
        ("random", "7.5e-5", 6): ((0.41, 0.42), (3, 3)), ("entropy", "7.5e-5", 6): ((0.40, 0.41), (3, 3)),
        ("random", "2e-4", 3): ((0.35, 0.36), (3, 3)), ("entropy", "2e-4", 3): ((0.30, 0.26), (3, 1)),
        ("random", "2e-4", 6): ((0.39, 0.40), (3, 3)), ("entropy", "2e-4", 6): ((0.38, 0.39), (3, 3))}
    num = 0
    for (sampler, lr, epochs), (scores, classes) in grid.items():
        for seed, score, c in zip((100, 101), scores, classes):
            job(tmp_path, num, [f"sampler={sampler}", f"distill.lr={lr}", f"distill.epochs={epochs}", f"seed={seed}"],
                score, 60.0, classes=c)
            num += 1
    _, rows = sweep_table(collect(tmp_path))
    table, picks = pilot_picks(rows)
    # 2e-4 × 6 is best but collapses; 7.5e-5 × 6 (46.65) is within half a point of 2e-4 × 3 (46.5) and costs more
    assert picks["full KD"] == {"distill.lr": 2e-4, "distill.epochs": 3, "dev": pytest.approx(0.465),
                                "every_recipe_collapses": False}
    assert picks["efficient"]["distill.epochs"] == 6 and picks["efficient"]["dev"] == pytest.approx(0.41)
    assert "| full KD | 0.0002 | 6 | none | 2 | 1 | 50.50 |  |" in table
    main(["--pick", str(_saved(tmp_path, rows))])
    assert "| efficient | 7.5e-05 | 6 | random, entropy | 4 | 0 | 41.00 | **yes** |" in capsys.readouterr().out
    with pytest.raises(UserError, match="efficient pilot is not complete"):
        pilot_picks([r for r in rows if not (r["sampler"] == "entropy" and r["distill.epochs"] == "6")])
    with pytest.raises(UserError, match=r"full KD pilot is not the design's grid: not run \(or not finished\): "
                                        r"lr 7.5e-05 × 6 epochs, lr 0.0002 × 6 epochs\."):
        pilot_picks([r for r in rows if not (r["sampler"] == "none" and r["distill.epochs"] == "6")])
    with pytest.raises(UserError, match=r"outside the grid: lr 0.0002 × 3 epochs"):
        pilot_picks(rows, grid=PILOT_GRID - {(2e-4, 3)})
    for r in rows:  # every full-KD recipe has a one-class job: the best mean, fewer epochs or not, and said so
        if r["sampler"] == "none":
            r["collapsed"]["100"] = True
    table, picks = pilot_picks(rows)
    assert picks["full KD"] == {"distill.lr": 2e-4, "distill.epochs": 6, "dev": pytest.approx(0.505),
                                "every_recipe_collapses": True}
    assert "| 50.50 | **yes** (every recipe has a one-class job) |" in table


def _saved(folder: Path, rows: list[dict]) -> Path:
    path = folder / "pilot.json"
    path.write_text(json.dumps(rows))
    return path


def test_the_pools_pilot_reads_how_many_epochs_full_kd_needs(tmp_path, capsys):
    """Design v2 on SST-2's pool: the dev score after each epoch from each pilot job's CSV log, and the fewest epochs
    whose mean is within half a point of the best epoch's."""
    from dkd.studies.report import epochs_needed

    for seed, scores in ((100, (0.850, 0.868, 0.871)), (101, (0.846, 0.872, 0.875))):
        logs = tmp_path / f"sst2_full_kd-seed{seed}" / "csv"
        logs.mkdir(parents=True)
        (logs.parent / "metrics.json").write_text("{}")
        rows = "".join(f"0.5,{epoch},{100 * epoch + 50},\n,{epoch},{100 * epoch + 99},{score}\n"  # train, then dev
                       for epoch, score in enumerate(scores))
        (logs / "metrics.csv").write_text("train/kd,epoch,step,dev/score\n" + rows)
    main(["--epochs", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| 2 | 86.80 | 87.20 | 87.00 | **yes** |" in out  # epoch 3 (87.30) is within half a point of it
    assert "E = 2" in out
    assert epochs_needed({"a": {1: 0.80, 2: 0.85}, "b": {1: 0.80, 2: 0.86}})[1] == 2  # still improving: the last
    with pytest.raises(UserError, match="logged dev after different epochs"):
        epochs_needed({"a": {1: 0.80, 2: 0.85}, "b": {1: 0.80}})
    (tmp_path / "sst2_full_kd-seed101" / "csv" / "metrics.csv").unlink()
    with pytest.raises(SystemExit, match="sst2_full_kd-seed101: no csv"):
        main(["--epochs", str(tmp_path)])


def test_a_pilots_grid_is_given_as_lr_and_epochs():
    from dkd.studies.report import PILOT_GRID, parse_grid

    assert parse_grid("7.5e-5:3,2e-4:3,7.5e-5:6,2e-4:6") == PILOT_GRID
    assert parse_grid("7.5e-5:2,2e-4:2") == {(7.5e-5, 2), (2e-4, 2)}
    with pytest.raises(UserError, match="<lr>:<epochs>"):
        parse_grid("7.5e-5x2")


def test_a_pilot_of_one_epoch_count_still_names_it_for_the_pick(tmp_path):
    """The pool's efficient-mode pilot varies the learning rate only: the epochs, set by every job, stay a column, so
    that the pick (which reads the recipe from the summary) knows them."""
    from dkd.studies.report import parse_grid, pilot_picks

    num = 0
    for lr, scores in (("7.5e-5", (0.84, 0.85)), ("2e-4", (0.86, 0.85))):
        for sampler in ("random", "entropy"):
            for seed, score in zip((100, 101), scores):
                job(tmp_path, num, [f"sampler={sampler}", f"distill.lr={lr}", "distill.epochs=2", f"seed={seed}"],
                    score, 60.0)
                num += 1
    _, rows = sweep_table(collect(tmp_path))
    assert {r["distill.epochs"] for r in rows} == {"2"}
    _, picks = pilot_picks(rows, grid=parse_grid("7.5e-5:2,2e-4:2"))
    assert picks["efficient"]["distill.lr"] == 2e-4 and picks["efficient"]["dev"] == pytest.approx(0.855)
