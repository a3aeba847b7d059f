"""The reproduction report's studies, on synthetic jobs: which variant a job is, refusal of jobs that differ in more
than the studied options, the paired claims and their verdicts, and a rebuild from the saved JSON."""
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from dkd.errors import UserError
from dkd.studies.design import STUDIES, Claim, Study
from dkd.studies.jobs import collapsed_on, gflops_per_instance, gflops_per_instance_run, load_jobs, variant_of
from dkd.studies.reproduction import report, summarise, verdict_table
from dkd.studies.tables import markdown, verdict_markdown

SEEDS = (42, 1, 2, 3, 4)


def job(sampler: str, seed: int, dev: float, ratio: float = 0.1, train_limit=None, lr: float = 7.5e-5,
        correct: list | None = None, classes: int | None = None, test: tuple | None = None) -> dict:
    """``classes``: how many classes the run predicted on dev (metrics.json); ``test``: (accuracy, classes) of
    ``python -m dkd.ship.evaluate`` on the test split."""
    pool, examples = 100, (train_limit or 100)
    predictions = {**({"dev": {"correct": correct}} if correct else {}),
                   **({"test": {"metrics": {"test/acc": test[0]}, "predicted_classes": test[1]}} if test else {})}
    return {
        "job": f"{sampler}-{ratio}-{train_limit}-{seed}", "choices": {"sampler": sampler, "task": "sst5"},
        "config": {"seed": seed, "threads": 1, "sampler": {"ratio": ratio, "mode": "efficient", "pool": 1},
                   "distill": {"lr": lr, "epochs": 3, "train_limit": train_limit},
                   "paths": {"output_dir": f"/x/{seed}"}},
        "metrics": {"seed": seed, "task": "sst5", "dev": {"dev/score": dev}, "wall_time_s": 60.0,
                    "train_examples_per_s": 10.0, "train_examples": examples, "pool_examples": pool,
                    "decisions": {"sampler_selected": ratio if sampler != "none" else 1.0},
                    "flops": {"examples": 3 * examples, "gflops": {"total": 3 * examples * 2.0}},
                    "code": {"commit": "abc1234def"}, **({"predicted_classes": {"dev": classes}} if classes else {})},
        "teachers": {"base": {"dir": "t", "dev": {"dev/score": 0.5}}},
        **({"predictions": predictions} if predictions else {}),
    }


def sweep(shift: dict, **kw) -> list[dict]:
    """Five seeds of full KD and of each variant in ``shift`` (its dev score = full KD's + shift)."""
    base = {s: 0.40 + 0.01 * i for i, s in enumerate(SEEDS)}
    jobs = [job("none", s, base[s], **kw) for s in SEEDS]
    for sampler, d in shift.items():
        jobs += [job(sampler, s, base[s] + d + (0.001 if i % 2 else -0.001), **kw) for i, s in enumerate(SEEDS)]
    return jobs


def test_variants_are_named_from_the_studied_options():
    study = STUDIES["selection"]
    assert variant_of(study, job("none", 1, 0.4)) == "full KD"
    assert variant_of(study, job("entropy", 1, 0.4)) == "entropy r=0.1"
    assert variant_of(study, job("none", 1, 0.4, train_limit=10)) == "fixed random 10% subset"
    with pytest.raises(UserError, match="make no variant"):
        variant_of(study, job("entropy", 1, 0.4, ratio=0.3))


AVX2 = "env ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 "  # docs/repro/v2_run.sh


def dry_run(tmp_path, arms: str) -> dict[str, str]:
    """The command docs/repro/v2_run.sh would run for each of ``arms`` at seed 42 (DRY=1), full KD's pick, by arm
    (the job folder's name: the script prints two at a time, in either order)."""
    import subprocess

    from tests.conftest import ROOT

    lines = subprocess.run(["bash", "docs/repro/v2_run.sh"], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={"PATH": os.environ["PATH"], "DRY": "1", "OUT": str(tmp_path), "SEEDS": "42",
                                "FULL": "2e-4 6", "EFF": "2e-4 3", "ARMS": arms}).stdout.splitlines()
    by_arm = {Path(re.search(r"hydra.run.dir=(\S+)", line).group(1)).name.removesuffix("-seed42"): line
              for line in lines}
    assert len(by_arm) == len(lines)  # each arm started once
    return by_arm


def test_finding_1s_jobs_and_their_teachers_run_on_avx2_kernels_and_the_others_on_the_machines(tmp_path):
    """AVX2 and AVX-512 kernels fine-tune two different teachers from one recipe (batch 23): finding 1's arms, whose
    teachers each machine refits, pin theirs to AVX2, which every x86-64 machine has; arms of one teacher do not."""
    lines = dry_run(tmp_path, "smallest hard_faithful full_kd entropy kd_pt")
    pinned = {arm: line.startswith(AVX2) for arm, line in lines.items()}
    assert pinned == {"smallest": True, "hard_faithful": True, "full_kd": False, "entropy": False, "kd_pt": False}
    assert all(line.count(AVX2) == 2 for line in lines.values() if line.startswith(AVX2))  # its evaluation too


def test_each_arm_of_the_combined_run_as_v2_run_sh_starts_it_is_its_variant(tmp_path):
    """The arms' overrides (docs/repro/v2_run.sh, printed by DRY=1) composed with experiment=repro_combined make the
    study's variants, whose values come from that experiment: the choice committed there is the one the report reads
    (an experiment's sampler.mode and adoption.faithful would otherwise reach the arms without them)."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg

    arms = {"static_kd": "static KD", "selection_alone": "selection alone", "adoption_alone": "adoption alone",
            "objective_alone": "objective alone", "combined": "combined"}
    dry = dry_run(tmp_path, " ".join(arms))
    study = STUDIES["combined"]
    for arm, line in dry.items():
        label = arms.pop(arm)
        assert line.startswith(AVX2 + "python train.py ")  # its teachers are finding 1's, refit on AVX2 kernels
        overrides = line.removeprefix(AVX2).split(" threads=1")[0].removeprefix("python train.py ").split()
        cfg = compose_cfg(overrides)
        job = {"job": arm, "choices": dict(cfg.hydra.runtime.choices),
               "config": {k: OmegaConf.to_container(cfg[k]) for k in ("sampler", "adoption")}}
        assert variant_of(study, job) == label, (arm, overrides)
        assert cfg.distill.lr == 2e-4 and cfg.distill.epochs == 6 and cfg.distill.adamw == "auto"
        assert cfg.seed == 42 and cfg.sampler.ratio == 0.1 and cfg.weighting.alpha_pt == 100
    assert not arms  # each started once
    assert study.variants["combined"]["sampler.mode"] == "faithful"  # finding 2: efficient mode loses > 1 point


def test_claims_follow_the_paired_interval():
    summary = summarise(STUDIES["selection"], sweep({"entropy": 0.0, "random": -0.03, "margin": -0.05}))
    by = {(c["claim"], c["variant"], c["baseline"]): c["dev"] for c in summary["claims"]}
    assert by[("2a", "entropy r=0.1", "full KD")]["verdict"] == "confirmed"  # within ±0.1 points of full KD
    assert by[("2a", "margin r=0.1", "full KD")]["verdict"] == "refuted"  # 5 points below: beyond the 1-point margin
    assert by[("2b", "entropy r=0.1", "random r=0.1")]["verdict"] == "confirmed"
    assert by[("2b", "margin r=0.1", "random r=0.1")]["verdict"] == "refuted"
    assert by[("2d", "entropy r=0.1", "margin r=0.1")]["verdict"] == "confirmed"  # they differ
    assert by[("2a", "entropy r=0.1", "full KD")]["mean"] == pytest.approx(-0.0002)  # pinned: seeds' +-0.001 pairs
    assert summary["variants"]["full KD"]["gflops_per_instance"] == pytest.approx(2.0)
    assert summary["commits"] == ["abc1234"]


def test_the_report_names_the_kernels_its_jobs_trained_with_where_they_recorded_them():
    jobs = sweep({"entropy": 0.0})
    assert "Kernels" not in markdown(summarise(STUDIES["selection"], jobs))  # jobs from before the record
    for j in jobs[:4]:
        j["metrics"]["kernels"] = {"aten": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert "Kernels: AVX2 (4 jobs), not recorded (6 jobs)." in markdown(summarise(STUDIES["selection"], jobs))


def test_below_its_planned_seeds_a_claim_is_pending_with_what_the_rule_reads_so_far():
    """The design's sample size is five seeds, ten where the first five's interval is wider than ±δ: fewer give a
    reading, not a verdict, and the claim stays in its Holm family."""
    jobs = sweep({"entropy": 0.0, "margin": -0.05})
    four = [j for j in jobs if j["metrics"]["seed"] != SEEDS[-1] or j["choices"]["sampler"] != "entropy"]
    summary = summarise(STUDIES["selection"], four)
    by = {(c["variant"], c["baseline"]): c["dev"] for c in summary["claims"]}
    keeps, lower = by[("entropy r=0.1", "full KD")], by[("margin r=0.1", "full KD")]
    assert (keeps["n"], keeps["planned"], keeps["verdict"], keeps["reading"]) == (4, 5, "pending", "confirmed")
    assert (lower["n"], lower["planned"], lower["verdict"], "reading" in lower) == (5, 5, "refuted", False)
    assert summary["families"]["dev"] == 3  # 2a twice and 2d (entropy − margin, 4 seeds): the pending ones count
    rows = {line.split(" | ")[1]: line for line in markdown(summary).splitlines() if line.startswith("| 2")}
    assert "**pending** (4 of 5 seeds; reads confirmed so far)" in rows["entropy r=0.1 − full KD"]
    assert "**pending** (4 of 5 seeds; reads confirmed so far)" in rows["entropy r=0.1 − margin r=0.1"]
    assert "**refuted**: more than 1 point lower |" in rows["margin r=0.1 − full KD"]
    table = verdict_markdown([("selection", summary)])
    assert "**pending** (4 of 5 seeds) for entropy r=0.1; **refuted**: more than 1 point lower for margin" in table
    # margin's d alternates 3 and 7 points below: its five-seed interval is wider than ±1, so it waits for ten
    wide = [dict(j, metrics={**j["metrics"], "dev": {"dev/score": j["metrics"]["dev"]["dev/score"] + (
        0.02 if SEEDS.index(j["metrics"]["seed"]) % 2 else -0.02)}}) if j["choices"]["sampler"] == "margin" else j
        for j in jobs]
    lower = next(c["dev"] for c in summarise(STUDIES["selection"], wide)["claims"]
                 if (c["variant"], c["baseline"]) == ("margin r=0.1", "full KD"))
    assert (lower["n"], lower["planned"], lower["verdict"], lower["reading"]) == (5, 10, "pending", "refuted")
    assert lower["first_stage_half"] > 0.01


def test_a_comparison_wider_than_delta_names_the_arms_to_extend_to_ten_seeds():
    base = {s: 0.40 + 0.01 * i for i, s in enumerate(SEEDS)}
    jobs = [job("none", s, base[s]) for s in SEEDS] + [  # entropy's d alternates ±2 points: wider than ±1
        job("entropy", s, base[s] + (0.02 if i % 2 else -0.02)) for i, s in enumerate(SEEDS)]
    jobs += [job(m, s, base[s] + (0.001 if i % 2 else -0.001)) for m in ("random", "margin")
             for i, s in enumerate(SEEDS)]  # margin's comparisons with full KD and random: narrow
    text = markdown(summarise(STUDIES["selection"], jobs))
    width = stats.t.ppf(0.975, 4) * np.std([-2, 2, -2, 2, -2], ddof=1) / math.sqrt(5)  # 2.7764 · 2.19 / √5
    extend = text.split("so design v2 adds seeds up to 10 to both arms: ")[1]
    assert extend.startswith(f"entropy r=0.1 − full KD (±{width:.2f}; n = 5 now); entropy r=0.1 − random r=0.1 (±")
    assert "entropy r=0.1 − margin r=0.1" in extend and "margin r=0.1 − full KD" not in extend
    assert "margin r=0.1 − random r=0.1" in text and "margin r=0.1 − random r=0.1" not in extend
    assert text.rstrip().endswith("Arms to extend: full KD, entropy r=0.1, random r=0.1, margin r=0.1.")
    assert "fewer than 5 paired seeds" not in text
    # two seeds of each arm: as wide, but the ten-seed rule is read at five
    early = markdown(summarise(STUDIES["selection"], [j for j in jobs if j["metrics"]["seed"] in SEEDS[:2]]))
    assert "Arms to extend" not in early
    assert "5 of the 5 comparisons have fewer than 5 paired seeds on dev: whether they get seeds up to 10" in early
    # seeds 5 and 6 added, entropy's d 0 in both: narrower at seven, but the rule reads the first five seeds run
    more = jobs + [job(m, s, 0.45) for m in ("none", "entropy", "random", "margin") for s in (5, 6)]
    later = markdown(summarise(STUDIES["selection"], more)).split("so design v2 adds seeds up to 10 to both arms: ")[1]
    assert later.startswith(f"entropy r=0.1 − full KD (±{width:.2f}; n = 7 now)")


def test_jobs_that_differ_beyond_the_studied_options_are_refused():
    jobs = sweep({"entropy": 0.0})
    jobs[-1]["config"]["distill"]["weight_decay"] = 0.1
    with pytest.raises(UserError, match="differs from .* distill.weight_decay: None vs 0.1"):
        summarise(STUDIES["selection"], jobs)
    older = sweep({"entropy": 0.0})  # a key added since some jobs ran: absent means what those jobs did
    for j in older[5:]:
        j["config"]["distill"]["adamw"] = "auto"
    summarise(STUDIES["selection"], older)
    older[-1]["config"]["distill"]["adamw"] = "fused"
    with pytest.raises(UserError, match="distill.adamw: 'auto' vs 'fused'"):
        summarise(STUDIES["selection"], older)
    other = sweep({"entropy": 0.0})
    other[-1]["teachers"] = {"base": {"dir": "another", "dev": {"dev/score": 0.5}}}  # another recipe
    with pytest.raises(UserError, match="differ in their base teacher's folder: another vs t.*one recipe"):
        summarise(STUDIES["selection"], other)
    other[0]["teachers"] = {"base": {"dir": "t", "dev": {"dev/score": 0.5}}}
    other[-1]["teachers"] = {"base": {"dir": "t", "dev": {"dev/score": 0.5}}, "large": {"dir": "l", "dev": None}}
    summarise(STUDIES["selection"], other)  # another role beside the same base teacher: the combined study's case
    other[-1]["metrics"]["data"] = "0123"
    summarise(STUDIES["selection"], other)  # not recorded by the others: nothing to compare
    other[0]["metrics"]["data"] = "4567"
    with pytest.raises(UserError, match="differ in their training data: 0123 vs 4567"):
        summarise(STUDIES["selection"], other)
    twice = sweep({}) + [job("none", 1, 0.3)]
    with pytest.raises(UserError, match="same variant and seed"):
        summarise(STUDIES["selection"], twice)


def refit(jobs: list[dict], seeds, dev: float = 0.5, weights: str | None = None) -> list[dict]:
    """The jobs, those of ``seeds`` learning from a base teacher of the same folder (recipe) with this dev score and
    weights."""
    return [dict(j, teachers={"base": {"dir": "t", "dev": {"dev/score": dev},
                                       **({"weights": weights} if weights else {})}})
            if j["metrics"]["seed"] in seeds else j for j in jobs]


def test_a_seeds_jobs_share_their_teachers_and_seeds_may_learn_from_a_refit():
    """A teacher fine-tuned again by its recipe on another CPU keeps its folder but not its weights (issue 29: the
    MiniLM teacher refit on an AMD EPYC). Its jobs pair with each other, never with the first teacher's: a seed split
    between the two is refused; whole seeds under each are read together, d̄ shown per set beside the pooled one."""
    jobs = sweep({"entropy": 0.0, "random": -0.03})
    split = refit(jobs, {42}, weights="bbbb")
    split = [dict(j, teachers={"base": {"dir": "t", "dev": {"dev/score": 0.5}, "weights": "aaaa"}})
             if j["metrics"]["seed"] == 42 and j["choices"]["sampler"] == "entropy" else j for j in split]
    with pytest.raises(UserError, match="seed 42: entropy-0.1-None-42 and none-0.1-None-42 learnt from different base "
                                        "teachers .weights' sha256 aaaa vs bbbb.*run the seed again whole"):
        summarise(STUDIES["selection"], split)
    moved = refit(jobs, {1}, dev=0.49)
    moved[SEEDS.index(1)] = refit([moved[SEEDS.index(1)]], {1}, dev=0.5)[0]  # full KD's seed 1: the other score
    with pytest.raises(UserError, match="seed 1: entropy-0.1-None-1 and none-0.1-None-1 learnt from different base "
                                        "teachers .dev score 0.49 vs 0.5"):
        summarise(STUDIES["selection"], moved)
    # what a job did not record matches across seeds too: old jobs without weights, a seed without the large role
    old = refit(jobs, set(SEEDS[1:]), weights="aaaa")
    old = [dict(j, teachers={**j["teachers"], "large": {"dir": "l", "dev": {"dev/score": 0.6}}})
           if j["metrics"]["seed"] != 4 else j for j in old]
    assert [(s["seeds"], s["teachers"]) for s in summarise(STUDIES["selection"], old)["teacher_sets"]] == [
        (list(SEEDS), {"base": {"dev": 0.5, "weights": "aaaa"}, "large": {"dev": 0.6, "weights": None}})]
    # weights a job did not record match any of its seed: full KD's seed 42 recorded none
    first, second = refit(jobs, set(SEEDS[:2]), weights="aaaa"), {2, 3, 4}
    first = refit(first, second, dev=0.49, weights="bbbb")
    first[0] = refit([first[0]], {42})[0]
    summary = summarise(STUDIES["selection"], first)
    assert [(s["seeds"], s["teachers"]["base"]) for s in summary["teacher_sets"]] == [
        ([42, 1], {"dev": 0.5, "weights": "aaaa"}), ([2, 3, 4], {"dev": 0.49, "weights": "bbbb"})]
    keeps = next(c["dev"] for c in summary["claims"] if (c["variant"], c["baseline"]) == ("entropy r=0.1", "full KD"))
    # entropy's d is ∓0.1 points by seed (−0.1 at seeds 42, 2, 4; +0.1 at 1, 3): each set's mean, and the pooled
    assert [(t["set"], t["n"]) for t in keeps["by_teachers"]] == [(1, 2), (2, 3)]
    assert [t["mean"] for t in keeps["by_teachers"]] == pytest.approx([0.0, -0.001 / 3], abs=1e-12)
    assert keeps["mean"] == pytest.approx(-0.001 / 5)
    text = markdown(summary)
    assert "Teachers: 2 sets" in text and "set 1 (seeds 42, 1): base 50.00 (weights aaaa…); set 2 (seeds 2, 3, 4): " \
        "base 49.00 (weights bbbb…)." in text
    row = next(line for line in text.splitlines() if line.startswith("| 2a: ") and "entropy r=0.1 − full KD" in line)
    assert row.endswith("| set 1: +0.00 (n = 2); set 2: -0.03 (n = 3) |")
    assert "; seeds under 2 refits of the teachers (d per set in the study's table);" in verdict_markdown(
        [("selection", summary)])
    one = markdown(summarise(STUDIES["selection"], jobs))  # one teacher: no sets, no column
    assert "Teacher dev score: base 50.00." in one and "d per teacher set" not in one


def test_under_several_teacher_sets_every_row_has_the_headers_cells_and_d_per_set_covers_the_seeds_read():
    """On test (the extra dev column), with a comparison not tested and one with a seed beyond the five it is read
    at: the per-set n sum to the n read."""
    jobs = sweep({"entropy": 0.0}, test=(0.5, 5)) + [job("margin", 42, 0.4, test=(0.5, 5))]
    jobs += [job(s, 5, 0.45, test=(0.5, 5)) for s in ("none", "entropy")]
    summary = summarise(STUDIES["selection"], refit(refit(jobs, {42, 1, 2}, weights="aaaa"), {3, 4, 5}, weights="bbbb"))
    assert [s["seeds"] for s in summary["teacher_sets"]] == [[42, 1, 2], [3, 4, 5]]
    read = next(c["test"] for c in summary["claims"] if (c["variant"], c["baseline"]) == ("entropy r=0.1", "full KD"))
    assert (read["n"], read["not_read"]) == (5, 1)
    assert [(t["set"], t["n"]) for t in read["by_teachers"]] == [(1, 3), (2, 2)]  # seed 5 is not read
    lines = markdown(summary).split("Verdicts on **test**")[1].splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| claim |") and "| d per teacher set | dev: d [95% t] |" in table[0]
    assert {line.count(" | ") for line in table} == {table[0].count(" | ")}
    assert any("not tested (n < 2)" in line for line in table)


def test_each_variant_has_one_recipe_which_may_differ_between_variants():
    """Design v2's pilot picks the student's learning rate and epochs per mode: arms may differ in them (shown per
    variant), the seeds of one arm may not."""
    jobs = sweep({"entropy": 0.0}, lr=7.5e-5)
    for j in jobs[5:]:
        j["config"]["distill"].update(lr=2e-4, epochs=6)
    summary = summarise(STUDIES["selection"], jobs)
    assert summary["variants"]["entropy r=0.1"]["recipe"] == {"distill.lr": 2e-4, "distill.epochs": 6,
                                                              "trainer.precision": None}
    assert "| entropy r=0.1 | 5 | 0.0002, 6 |" in markdown(summary) and "Precision: fp32." in markdown(summary)
    jobs[-1]["config"]["distill"]["epochs"] = 3
    with pytest.raises(UserError, match="variant 'entropy r=0.1' were trained by different recipes .*epochs=3"):
        summarise(STUDIES["selection"], jobs)


def test_the_verdict_table_has_a_row_per_claim_with_its_setting(tmp_path):
    """One row per claim of each saved study, its comparisons grouped by verdict, the setting they share (task, split,
    seeds, precision, recipe), the arms that collapsed, and a row for each finding not run."""
    base = {s: 0.40 + 0.01 * i for i, s in enumerate(SEEDS)}
    jobs = [job("none", s, base[s], classes=5, test=(base[s], 5)) for s in SEEDS]
    jobs += [job("margin", s, base[s] - 0.05 - 0.001 * i, classes=5, test=(base[s] - 0.05 - 0.001 * i, 5))
             for i, s in enumerate(SEEDS)]
    jobs += [job("entropy", s, base[s] + 0.001 * (i % 2), classes=5, test=(base[s] + 0.001 * (i % 2), 5))
             for i, s in enumerate(SEEDS)]
    jobs += [job("random", s, 0.25, classes=1 if s == 3 else 5, test=(0.25, 1 if s == 3 else 5)) for s in SEEDS]
    saved = tmp_path / "selection.json"
    saved.write_text(json.dumps({"study": "selection", "jobs": jobs}))
    table = verdict_table([saved])
    rows = [line for line in table.splitlines() if line.startswith("| Finding 2")]
    assert [r.split(" | ")[1].split(":")[0] for r in rows] == ["2a", "2b", "2d"]  # in claim order
    keeps = rows[0]
    assert "2a: keeps accuracy within 1 point of full KD (against full KD)" in keeps
    assert "SST-5, original data (8,544 sentences); efficient mode" in keeps
    assert "verdict on test; 5 seeds; fp32; student lr 7.5e-05, 3 epochs" in keeps
    assert "**refuted**: more than 1 point lower for margin r=0.1" in keeps
    assert "**confirmed** for entropy r=0.1" in keeps and "| none |" in keeps
    beats = rows[1]
    assert beats.endswith("| entropy r=0.1 +17.04 [+15.08, +19.00] †; margin r=0.1 +11.80 [+10.03, +13.57] † | "
                          "random r=0.1 1/5 |")  # † : random's seed 3 predicts one class
    assert "| Finding 1: teacher adoption | 1a, 1b, 1c | — | **not run yet** |" in table
    with pytest.raises(UserError, match="not a study JSON"):
        verdict_table([tmp_path / "missing.json"])


def test_one_study_on_two_tasks_gives_rows_per_setting(tmp_path):
    """Finding 2 on SST-5 and on SST-2's pool: the saved JSONs of each task are read as one study each, and every row
    names the data its verdict holds for (the pool's on dev: it has no labelled test split)."""
    base = {s: 0.40 + 0.01 * i for i, s in enumerate(SEEDS)}
    for task in ("sst5", "sst2"):
        jobs = [job(sampler, s, base[s] + shift + 0.001 * (i % 2))
                for sampler, shift in (("none", 0), ("entropy", -0.05)) for i, s in enumerate(SEEDS)]
        for j in jobs:
            j["metrics"]["task"] = j["choices"]["task"] = task
        (tmp_path / f"{task}.json").write_text(json.dumps({"study": "selection", "jobs": jobs}))
    table = verdict_table([tmp_path / "sst5.json", tmp_path / "sst2.json"])
    rows = [line for line in table.splitlines() if line.startswith("| Finding 2")]
    assert len(rows) == 2
    assert "SST-5, original data (8,544 sentences)" in rows[0] and "SST-2's pool of 67,349 phrases" in rows[1]
    assert all("verdict on dev (no test split)" in r and "**refuted**" in r for r in rows)
    assert "Finding 2: data selection (SST-2's pool of 67,349 phrases (redundant)):" in table  # its untested claims


def test_a_subset_run_is_charged_over_the_whole_pool():
    full, subset = job("none", 1, 0.4), job("none", 1, 0.4, train_limit=10)
    assert gflops_per_instance(full) == pytest.approx(2.0) and gflops_per_instance(subset) == pytest.approx(0.2)
    # over the whole run (3 epochs here): what arms trained for different epochs compare by
    assert gflops_per_instance_run(full) == pytest.approx(6.0)
    longer = job("none", 1, 0.4, train_limit=10)
    longer["metrics"]["flops"] = {"examples": 30 * 10, "gflops": {"total": 30 * 10 * 2.0}}  # 30 epochs of 10 rows
    assert gflops_per_instance_run(longer) == pytest.approx(6.0) and gflops_per_instance(longer) == pytest.approx(0.2)


def test_bootstrap_beside_the_t_interval_when_predictions_exist():
    right = [1] * 8 + [0] * 2
    jobs = [job("none", s, 0.8, correct=right) for s in SEEDS]
    jobs += [job("random", s, 0.7, correct=[1] * 7 + [0] * 3) for s in SEEDS]
    jobs += [job("entropy", s, 0.8, correct=right) for s in SEEDS]
    (claim,) = [c for c in summarise(STUDIES["selection"], jobs)["claims"]
                if c["variant"] == "entropy r=0.1" and c["baseline"] == "random r=0.1"]
    # every seed's pair answers alike, so the seeds add nothing: the one differing example (+1) is drawn
    # Binomial(10, 0.1) times in 10, P(0) = 0.349, P(≤ 2) = 0.930, P(≤ 3) = 0.987: [0, 0.3]
    assert claim["dev"]["bootstrap"] == (0.0, 0.3)


def test_answers_to_different_numbers_of_examples_are_refused():
    jobs = [job("none", s, 0.8, correct=[1, 0, 1]) for s in SEEDS]
    jobs += [job("entropy", s, 0.8, correct=[1, 0] if s == 2 else [1, 1, 1]) for s in SEEDS]
    with pytest.raises(UserError, match=r"different numbers of dev examples \(2 examples: entropy-0.1-None-2; "
                                        r"3 examples: none-0.1-None-42, .*entropy-0.1-None-4\)"):
        summarise(STUDIES["selection"], jobs)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_metric_that_is_not_finite_names_its_claim_and_jobs(bad):
    jobs = sweep({"entropy": 0.0})
    jobs[8]["metrics"]["dev"]["dev/score"] = bad  # entropy, seed 3
    with pytest.raises(UserError, match=r"claim 2a \(entropy r=0.1 − full KD\) on dev: the paired difference is not "
                                        r"finite \(seed 3: (nan|inf) − 0.43\)\. The jobs \(seed 3: none-0.1-None-3 and "
                                        r"entropy-0.1-None-3\)"):
        summarise(STUDIES["selection"], jobs)


def test_a_claim_of_an_unknown_kind_or_a_claim_given_twice_is_refused():
    with pytest.raises(ValueError, match="kind='better', not one of higher, keeps, differ, same"):
        Claim("2x", "entropy r=0.1", "full KD", "beats", "better")
    claim = Claim("2b", "entropy r=0.1", "random r=0.1", "beats random selection")
    with pytest.raises(ValueError, match="claims given twice .*'entropy r=0.1', 'random r=0.1', 'higher'"):
        Study("t", ("sampler",), {}, (claim, claim))


HOLM_SEEDS = {  # per seed: full KD, random r=0.1 and entropy r=0.1 on dev
    s: (full, full - 0.02 + noise, full - 0.02 + noise + gain)
    for s, full, noise, gain in zip(SEEDS, (0.40, 0.41, 0.42, 0.43, 0.44), (0.003, -0.004, 0.001, 0.002, -0.002),
                                    (0.012, 0.001, 0.010, 0.002, 0.009))}


HOLM_TEST = {"none": (0.50, 0.52, 0.49, 0.51, 0.50), "random": (0.51, 0.50, 0.50, 0.52, 0.49),
             "entropy": (0.50, 0.51, 0.51, 0.50, 0.50)}  # per seed, on test: no effect


def holm_jobs(test: bool = False) -> list[dict]:
    """Full KD, random and entropy at r = 0.1 (HOLM_SEEDS); ``test``: with the test accuracies of HOLM_TEST."""
    return [job(name, s, HOLM_SEEDS[s][i], test=(HOLM_TEST[name][k], 5) if test else None)
            for k, s in enumerate(SEEDS) for i, name in enumerate(("none", "random", "entropy"))]


def test_holm_corrects_within_the_claims_of_two_or_more_seeds_on_one_split():
    """Alone, entropy beats random (p = 0.019 < 0.025); in its family of two on dev (with entropy keeps full KD, p =
    0.82) Holm doubles it to 0.038: unresolved. Claims of another family (the test split's), and claims not tested
    (one seed), change nothing; more claims of two or more seeds on dev join the family."""
    full, rand, ent = (np.array([HOLM_SEEDS[s][i] for s in SEEDS]) for i in range(3))
    p_beats = stats.ttest_rel(ent, rand, alternative="greater").pvalue
    p_keeps = stats.ttest_1samp(ent - full, -0.01, alternative="greater").pvalue
    assert p_beats == pytest.approx(0.0188391, abs=1e-6) and p_keeps == pytest.approx(0.8217766, abs=1e-6)

    def dev(summary: dict) -> dict:
        return {(c["variant"], c["baseline"]): c["dev"] for c in summary["claims"]}

    alone = dev(summarise(STUDIES["selection"], holm_jobs()))
    beats = alone[("entropy r=0.1", "random r=0.1")]
    assert beats["p_confirm"] == pytest.approx(p_beats) and beats["holm_confirm"] == pytest.approx(2 * p_beats)
    assert beats["verdict"] == "unresolved" and alone[("entropy r=0.1", "full KD")]["holm_confirm"] == pytest.approx(
        p_keeps)

    with_test = summarise(STUDIES["selection"], holm_jobs(test=True))
    assert with_test["verdict_split"] == "test" and with_test["families"] == {"dev": 2, "test": 2}
    assert dev(with_test) == alone  # the test split's claims are another family
    # ... whose p-values are larger: pooled in one family of four, dev's would have been 4 · p_beats
    assert min(c["test"]["p_confirm"] for c in with_test["claims"]) > p_beats

    one_seed = summarise(STUDIES["selection"], holm_jobs() + [job("margin", 42, 0.41)])
    assert one_seed["families"] == {"dev": 2, "test": 0} and dev(one_seed) == {
        **alone, **{k: {"n": 1, "verdict": "not tested"} for k in dev(one_seed) if "margin r=0.1" in k}}
    assert "| 1 | – | – | – | – | not tested (n < 2) | – |" in markdown(one_seed)
    assert "| margin r=0.1 | 1 | 7.5e-05, 3 | 41.00 | – |" in markdown(one_seed)  # one seed: no ± to show
    assert "over the 2 claims of this study with two or more paired seeds on dev (one family" in markdown(one_seed)

    margin = summarise(STUDIES["selection"], holm_jobs() + [job("margin", s, HOLM_SEEDS[s][2]) for s in SEEDS])
    assert margin["families"]["dev"] == 5  # margin keeps, beats random, differs from entropy: the same finding


def test_collapse_is_counted_per_arm_and_flagged_per_claim():
    """A job whose model predicts one class on a split is counted per variant and flags every claim that pairs it
    there; a count not recorded is said, never guessed. Every job has its test predictions: the verdicts are on test."""
    base = {s: 0.40 + 0.01 * i for i, s in enumerate(SEEDS)}
    jobs = [job("none", s, base[s], classes=5, test=(base[s] + 0.02, 5)) for s in SEEDS]
    jobs += [job("entropy", s, base[s] - 0.001 * i, classes=5, test=(base[s] + 0.02 - 0.001 * i, 5))
             for i, s in enumerate(SEEDS)]
    jobs += [job("margin", s, base[s], test=(base[s] + 0.02, 5)) for s in SEEDS]  # dev classes not recorded
    jobs += [job("random", s, 0.25 if s == 3 else base[s] - 0.05, classes={3: 1, 4: None}.get(s, 5),
                 test=(0.23, 1) if s == 3 else (base[s] - 0.03, 5)) for s in SEEDS]
    summary = summarise(STUDIES["selection"], jobs)
    assert summary["verdict_split"] == "test"
    variants = summary["variants"]
    assert variants["random r=0.1"]["collapsed"]["dev"] == {42: False, 1: False, 2: False, 3: True, 4: None}
    by = {(c["variant"], c["baseline"]): c for c in summary["claims"]}
    beats_random = by[("entropy r=0.1", "random r=0.1")]
    assert beats_random["test"]["collapse"] is True and beats_random["dev"]["collapse"] is True  # seed 3 on both
    assert beats_random["test"]["collapsed"] == {"variant": [], "baseline": [3]}
    assert by[("entropy r=0.1", "full KD")]["test"]["collapse"] is False
    assert by[("margin r=0.1", "full KD")]["test"]["collapse"] is False
    assert by[("margin r=0.1", "full KD")]["dev"]["collapse"] is None  # no collapse seen, but dev was not counted
    text = markdown(summary)
    assert "| 1/4 (1 not recorded) | 1/5 |" in text and "| not recorded | 0/5 |" in text and "| 0/5 | 0/5 |" in text
    assert "| **yes**: baseline 3 |" in text and "Verdicts on **test** (dev only chose the checkpoints)" in text
    jobs[0]["predictions"].pop("test")  # one job without test predictions: the verdicts fall back to dev
    assert summarise(STUDIES["selection"], jobs)["verdict_split"] == "dev"


def test_an_older_predictions_file_still_tells_the_classes_predicted(tmp_path):
    """predictions.json written before evaluate counted the classes: they are counted from its predictions."""
    j = job("none", 1, 0.4)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "metrics.json").write_text(json.dumps({**j["metrics"], "config": j["config"],
                                                       "teachers": j["teachers"]}))
    (tmp_path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": j["choices"]}}}))
    (tmp_path / "predictions.json").write_text(json.dumps(
        {"dev": {"metrics": {}, "correct": [1, 0, 1], "predictions": [2, 1, 2]},
         "test": {"metrics": {"test/acc": 0.5}, "correct": [1, 0], "predictions": [3, 3]}}))
    (loaded,) = load_jobs([tmp_path])
    assert loaded["predictions"]["test"] == {"metrics": {"test/acc": 0.5}, "correct": [1, 0], "predicted_classes": 1}
    assert collapsed_on(loaded, "test") is True and collapsed_on(loaded, "dev") is False
    loaded["predictions"]["test"].pop("predicted_classes")
    assert collapsed_on(loaded, "test") is None  # not recorded: not guessed from the accuracy


def test_report_rebuilds_from_folders_and_from_its_saved_json(tmp_path):
    folder = tmp_path / "multirun"
    for i, j in enumerate(sweep({"entropy": 0.01})):
        d = folder / str(i)
        (d / ".hydra").mkdir(parents=True)
        config = j.pop("config")
        (d / "metrics.json").write_text(json.dumps({**j["metrics"], "config": config,
                                                    "teachers": {"base": {"dir": "/s/t", "dev": {"dev/score": .5}}}}))
        (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": j["choices"]}}}))
        (d / "csv").mkdir()
        (d / "csv" / "metrics.csv").write_text(
            "step,train/sampler_u_selected,train/sampler_u_all\n0,0.9,0.5\n1,0.8,0.4\n")
    saved, png = tmp_path / "study.json", tmp_path / "study.png"
    text = report("selection", [folder], saved, png)
    assert "| entropy r=0.1 | 5 |" in text and "**confirmed**" in text and png.stat().st_size > 10_000
    assert report("selection", [saved]) == text
    assert load_jobs([saved])[5]["curves"]["train/sampler_u_all"] == [[0, 0.5], [1, 0.4]]
    with pytest.raises(UserError, match="known studies"):
        report("nope", [saved])


def test_report_cli_refuses_an_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no finished job"):
        load_jobs([Path(tmp_path)])


def test_cli_writes_markdown_json_and_plot(tmp_path, capsys):
    from dkd.studies.report import main

    saved = tmp_path / "s.json"
    saved.write_text(json.dumps({"study": "selection", "jobs": sweep({"entropy": -0.02})}))
    md, png = tmp_path / "s.md", tmp_path / "s.png"
    main(["--study", "selection", str(saved), "--md", str(md), "--png", str(png)])
    out = capsys.readouterr().out
    assert out.strip() == md.read_text().strip() and png.is_file()
    assert (tmp_path / "s_claims.png").stat().st_size > 10_000  # the claims' paired differences beside it
    # 2 points below: beyond 1 (one claim: Holm leaves its p as it is); no predictions: no bootstrap
    assert ("| entropy r=0.1 − full KD | keeps (1) | 5 | -2.02 | [-2.16, -1.88] | – | refute <0.001 < 0.025 | "
            "**refuted**: more than 1 point lower | not recorded |") in out
    assert "Verdicts on **dev** (the jobs carry no test predictions)" in out


def test_cli_says_what_is_wrong_without_a_traceback(tmp_path):
    from dkd.ship.evaluate import main as evaluate
    from dkd.studies.report import main

    with pytest.raises(SystemExit, match="python -m dkd.studies.report: --study nope: known studies are selection"):
        main(["--study", "nope", str(tmp_path)])
    with pytest.raises(SystemExit, match="python -m dkd.ship.evaluate: .* neither a finished run"):
        evaluate([str(tmp_path)])


def test_objective_study_shows_the_alignment_term_beside_the_kd_term(tmp_path):
    """The α_pt choice is checked from the jobs themselves: each loss term's mean over epoch 0, times its α."""
    folder = tmp_path / "multirun"
    weighting = {"kd_pt": {"_target_": "dkd.strategies.weighting.StaticWeights"},  # what each variant's group files set
                 "kd_pt_uncertainty": {"_target_": "dkd.strategies.weighting.UncertaintyWeights", "rule": "uncertainty",
                                       "measure": "entropy", "detach": True}}
    for i, (variant, seed) in enumerate((v, s) for v in ("kd_pt", "kd_pt_uncertainty") for s in SEEDS):
        j = job("none", seed, 0.40 + 0.01 * i)
        j["choices"]["variant"] = variant
        config = {**j.pop("config"), "weighting": {**weighting[variant], "alpha_kd": 1.0, "alpha_pt": 100.0}}
        d = folder / str(i)
        (d / ".hydra").mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({**j["metrics"], "config": config, "teachers": j["teachers"]}))
        (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": j["choices"]}}}))
        (d / "csv").mkdir()  # epoch 1's rows are left out of the first-epoch means
        (d / "csv" / "metrics.csv").write_text("step,epoch,train/kd_base,train/pt_base,train/weighting_u\n"
                                               "0,0,0.2,0.003,0.9\n1,0,0.4,0.005,0.8\n2,1,9.0,9.0,0.5\n")
    text = report("objective", [folder])
    assert "| kd_pt | 0.3000 | 0.00400 | 0.3000 | 0.4000 |" in text
    assert ("| kd_pt_uncertainty − kd_pt | higher (1) | 5 | +5.00 (d constant over seeds) | [+5.00, +5.00] | – | "
            "confirm <0.001 < 0.025 | **confirmed** |") in text
    metrics = json.loads((folder / "9" / "metrics.json").read_text())  # a job whose α_pt differs is another study
    metrics["config"]["weighting"]["alpha_pt"] = 1.0
    (folder / "9" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(UserError, match="weighting.alpha_pt: 100.0 vs 1.0"):
        report("objective", [folder])


def adoption_job(adoption: str, seed: int, acc: float, faithful: bool = False, asked: dict | None = None,
                 dev: float | None = None) -> dict:
    """A finding-1 job (test accuracy ``acc``, dev the same unless given): two teachers, ``asked``: GFLOPs per training
    example each teacher was asked for."""
    j = job("none", seed, acc if dev is None else dev, test=(acc, 5))
    j["job"] = f"{adoption}-{faithful}-{seed}"
    j["choices"]["adoption"] = adoption
    j["config"]["adoption"] = {"faithful": faithful}
    j["teachers"]["large"] = {"dir": "t-large", "dev": {"dev/score": 0.55}}
    j["metrics"]["flops"]["teacher_per_example"] = {**(asked or {"base": 1.0, "large": 5.0}),
                                                   "all_teachers_on_every_row": 6.0}
    return j


def test_adoption_is_read_against_the_better_single_teacher_and_costs_each_teacher_apart():
    """1a's baseline is whichever single-teacher student scores higher on dev over their shared seeds (the harder
    one, never chosen on test), named in the claim's row; both single-teacher arms extend when the claim needs ten
    seeds; the table gives each teacher's GFLOPs per instance."""
    spread = {s: 0.01 * i for i, s in enumerate(SEEDS)}
    jobs = [adoption_job("smallest", s, 0.40 + spread[s], asked={"base": 1.0, "large": 0.0}) for s in SEEDS]
    jobs += [adoption_job("largest", s, 0.42 + spread[s], asked={"base": 0.0, "large": 5.0}) for s in SEEDS]
    jobs += [adoption_job("hard", s, 0.42 + spread[s] + (0.03 if i % 2 else -0.03), asked={"base": 0.5, "large": 2.5})
             for i, s in enumerate(SEEDS)]
    jobs += [adoption_job("hard", s, 0.40 + spread[s], faithful=True) for s in SEEDS]
    summary = summarise(STUDIES["adoption"], jobs)
    by = {(c["claim"], c["variant"]): c for c in summary["claims"]}
    beats = by[("1a", "hard")]
    assert beats["baseline"] == "largest" and beats["chosen_from"] == ["smallest", "largest"]
    assert beats["test"]["mean"] == pytest.approx(-0.006)  # against largest: +-0.03 about it (three down, two up)
    assert by[("1a", "hard (faithful)")]["test"]["mean"] == pytest.approx(-0.02)
    assert by[("1b", "smallest")]["baseline"] == "largest" and "chosen_from" not in by[("1b", "smallest")]
    text = markdown(summary)
    assert "| hard − largest (the better of smallest, largest) |" in text
    assert "Arms to extend: smallest, largest, hard." in text  # hard's ±3-point swings: wider than ±1 at five
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| base 0.500 + large 2.500 |" in rows["| hard"] and "| base 1.000 + large 0.000 |" in rows["| smallest"]
    # the better single teacher flips when the smaller's student is the better one on dev, whatever test says
    flipped = [j for j in jobs if j["choices"]["adoption"] != "smallest"]
    flipped += [adoption_job("smallest", s, 0.30 + spread[s], dev=0.45 + spread[s]) for s in SEEDS]
    beats = {(c["claim"], c["variant"]): c for c in summarise(STUDIES["adoption"], flipped)["claims"]}[("1a", "hard")]
    assert beats["baseline"] == "smallest" and beats["test"]["mean"] == pytest.approx(0.114)
    table = verdict_markdown([("adoption", summary)])
    assert "1a: adoption beats the better single teacher (against largest (the better of smallest, largest))" in table
    # 11 claims, 3 tested (1a of hard and of hard faithful, against the better single teacher; 1b)
    assert "Finding 1: teacher adoption: 8 comparisons, claims 1a, 1c." in table
    assert Claim("1a", "soft", ("smallest", "largest"), "x").baseline_label == "the better of smallest, largest"
    # one seed of every arm so far (the first batch): the finding is under way, not dropped from the table
    first = summarise(STUDIES["adoption"], [j for j in jobs if j["config"]["seed"] == 42])
    row = next(line for line in verdict_markdown([("adoption", first)]).splitlines() if "Finding 1" in line)
    assert "| 1a, 1b, 1c | SST-5, original data (8,544 sentences); both teachers' logits cached" in row
    assert row.endswith("| **under way**: 1 paired seed so far, and a verdict needs two (design v2 reads 5) | — | "
                        "none |")


def test_the_teacher_check_scores_each_teacher_of_a_job_and_orders_them_by_size(make_cfg, assets, tmp_path, capsys):
    """The teachers a job learnt from, scored on its verdict split (MRPC has no test split: dev), smaller first by
    parameter count whatever their roles, their weights' sha256; larger − smaller with its paired bootstrap interval;
    the table rebuilt from the saved JSON; a job of one teacher refused."""
    import hashlib

    import torch
    from omegaconf import OmegaConf

    from dkd.models import load_classifier, load_tokenizer
    from dkd.studies import teacher_check as check_module

    cfg = make_cfg("task=mrpc", "teacher=both")
    folders = {}
    for role in ("base", "large"):  # the fixture's models carry no head: one is added (seeded) and saved
        torch.manual_seed(0 if role == "base" else 1)
        folders[role] = tmp_path / role
        load_classifier(str(assets["teacher" if role == "base" else "large"]), 2).save_pretrained(folders[role])
        load_tokenizer(str(assets["teacher" if role == "base" else "large"])).save_pretrained(folders[role])
    job = tmp_path / "job"
    job.mkdir()
    metrics = {"stage": "distill", "student_dir": str(tmp_path / "student"),
               "config": OmegaConf.to_container(cfg, resolve=True),
               "teachers": {role: {"dir": str(f), "dev": {"dev/score": 0.5}} for role, f in folders.items()}}
    (job / "metrics.json").write_text(json.dumps(metrics))
    saved = tmp_path / "teachers.json"
    check_module.main([str(job), "--save", str(saved)])
    scored = json.loads(saved.read_text())
    assert scored["split"] == "dev" and [t["role"] for t in scored["teachers"]] == ["large", "base"]  # 2 < 4 layers
    small, large = scored["teachers"]
    assert small["sha256"] == hashlib.sha256((folders["large"] / "model.safetensors").read_bytes()).hexdigest()
    result = check_module.check(scored)
    assert result["d"] == pytest.approx(large["accuracy"] - small["accuracy"])
    assert result["low"] <= result["d"] <= result["high"] and result["larger_is_better"] == (result["low"] > 0)
    printed = capsys.readouterr().out
    check_module.main([str(saved)])
    assert capsys.readouterr().out == printed and "base − large:" in printed
    same = {"teachers": [{"role": "a", "correct": [1, 0, 1, 1]}, {"role": "b", "correct": [1, 0, 1, 1]}]}
    assert check_module.check(same) == {"smaller": "a", "larger": "b", "d": 0.0, "low": 0.0, "high": 0.0,
                                        "larger_is_better": False}  # the same answers: no spread, no NaN
    metrics["teachers"]["base"]["weights"] = "0" * 64  # the job learnt from other weights than the folder holds now
    (job / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="not the one the job learnt from"):
        check_module.main([str(job)])
    metrics["teachers"]["base"]["weights"] = scored["teachers"][1]["sha256"]  # recorded and the same: scored
    (job / "metrics.json").write_text(json.dumps(metrics))
    check_module.main([str(job)])
    assert capsys.readouterr().out == printed
    metrics["teachers"].pop("large")
    (job / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="needs a job of two teachers"):
        check_module.main([str(job)])


def test_a_claim_is_read_on_its_planned_seeds_not_on_seeds_run_for_other_claims():
    """A comparison whose first five seeds are within ±δ is read on those five, even when both arms have a sixth
    (run because other claims extend them): the sixth would move d, and no design stated six."""
    jobs = sweep({"entropy": 0.0})
    jobs += [job("none", 5, 0.40), job("entropy", 5, 0.30)]  # seed 5: ten points apart
    (claim,) = [c for c in summarise(STUDIES["selection"], jobs)["claims"] if c["claim"] == "2a"]
    read = claim["dev"]
    assert (read["n"], read["planned"], read["not_read"]) == (5, 5, 1)
    assert read["mean"] == pytest.approx(-0.0002) and read["verdict"] == "confirmed"  # the five seeds' d, as before
