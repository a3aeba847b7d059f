"""Uncertainty and data selection: pinned values, which rows each measure keeps, and which rows reach each model."""
import math
from pathlib import Path

import pytest
import torch

from dkd.errors import UserError
from dkd.models import load_classifier
from dkd.module import DistillSystem
from dkd.strategies.adoption import SingleTeacher
from dkd.strategies.objectives import LogitKD
from dkd.strategies.samplers import AllInstances, MostUncertain, RandomInstances, keep_count
from dkd.strategies.uncertainty import uncertainty
from dkd.strategies.weighting import StaticWeights
from tests.conftest import gloo_teardown_flaky

# rows: sure of class 0, unsure, fairly sure of 1, uniform, sure of 1
LOGITS = torch.tensor([[4.0, 0.0], [0.3, 0.0], [0.0, 1.5], [0.0, 0.0], [-3.0, 3.0]])


def test_uncertainty_values_are_pinned():
    p = torch.softmax(LOGITS, -1)
    entropy = -(p * p.log()).sum(-1) / math.log(2)
    assert torch.allclose(uncertainty(LOGITS, "entropy"), entropy, atol=1e-6)
    assert uncertainty(LOGITS, "entropy")[3] == pytest.approx(1.0)
    top = p.max(-1).values
    assert torch.allclose(uncertainty(LOGITS, "margin"), 1 - (2 * top - 1), atol=1e-6)  # two classes: p1 - p2
    assert torch.allclose(uncertainty(LOGITS, "least_confidence"), (1 - top) * 2, atol=1e-6)
    three = torch.tensor([[2.0, 1.0, 0.0]])
    q = torch.softmax(three, -1)[0]
    assert uncertainty(three, "margin").item() == pytest.approx(1 - (q[0] - q[1]).item(), abs=1e-6)
    assert uncertainty(three, "least_confidence").item() == pytest.approx((1 - q[0].item()) * 1.5, abs=1e-6)


def test_uncertainty_is_safe_in_low_precision_and_carries_no_gradient():
    extreme = torch.tensor([[80.0, -80.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.bfloat16, requires_grad=True)
    for measure in ("entropy", "margin", "least_confidence"):
        u = uncertainty(extreme, measure)
        assert torch.isfinite(u).all() and u.dtype == torch.float32 and not u.requires_grad
        assert 0 <= u.min() and u.max() <= 1
    assert uncertainty(extreme, "entropy")[0].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("size, ratio, k", [(32, 0.1, 3), (32, 0.5, 16), (32, 1.0, 32), (5, 0.1, 1), (8, 0.25, 2),
                                            (1, 0.1, 1), (10, 0.3, 3)])
def test_keep_count(size, ratio, k):
    assert keep_count(size, ratio) == k


@pytest.mark.parametrize("size, ratio, k", [(32, 0.1, 3), (16, 0.1, 1), (7, 0.1, 0), (9, 0.1, 0), (10, 0.1, 1)])
def test_keep_count_of_the_authors_code_can_be_zero(size, ratio, k):
    """``int(bsz * selection_ratio)`` (DynamicKD models/student.py): no minimum."""
    assert keep_count(size, ratio, minimum=0) == k


def test_min_keep_zero_needs_the_faithful_mode():
    with pytest.raises(UserError, match="sampler.min_keep=0 lets k be 0.*sampler.mode=faithful"):
        MostUncertain("entropy", ratio=0.1, min_keep=0)
    with pytest.raises(UserError, match="sampler.min_keep=-1"):
        MostUncertain("entropy", ratio=0.1, mode="faithful", min_keep=-1)


@pytest.mark.parametrize("measure, reverse, ratio, rows", [
    ("entropy", False, 0.4, [1, 3]), ("margin", False, 0.4, [1, 3]), ("least_confidence", False, 0.4, [1, 3]),
    ("entropy", False, 0.6, [1, 2, 3]), ("entropy", True, 0.4, [0, 4]), ("least_confidence", True, 0.2, [4]),
    ("entropy", False, 0.1, [3]),  # r·B < 1: still one row, the most uncertain
])
def test_each_measure_keeps_the_right_rows(measure, reverse, ratio, rows):
    sampler = MostUncertain(measure, reverse, ratio)
    assert sampler.select(LOGITS, 5, LOGITS.device).tolist() == rows
    assert sampler.stats["selected"] == len(rows) / 5
    assert (sampler.stats["u_selected"] >= sampler.stats["u_all"]) != reverse


def test_random_keeps_k_distinct_rows_and_none_keeps_all():
    rows = RandomInstances(0.25).select(None, 16, torch.device("cpu"))
    assert rows.numel() == 4 and rows.unique().numel() == 4 and rows.tolist() == sorted(rows.tolist())
    assert AllInstances(0.1).select(None, 7, torch.device("cpu")).tolist() == list(range(7))


def test_bad_options_and_regression_are_refused():
    with pytest.raises(UserError, match=r"sampler.ratio=0: must lie in \(0, 1\]"):
        MostUncertain(ratio=0)
    with pytest.raises(UserError, match=r"sampler.mode='fast'"):
        RandomInstances(0.1, mode="fast")
    with pytest.raises(UserError, match=r"task stsb is a regression.*sampler=none or sampler=random"):
        MostUncertain("margin").check(1, "stsb")
    RandomInstances(0.1).check(1, "stsb")  # random has a meaning there


# ------------------------------------------------------------------------------------------ the step, counted
def batch(size: int = 10):
    torch.manual_seed(0)
    ids = torch.randint(5, 20, (size, 6))
    ids[:, 0], ids[:, -1] = 2, 3
    ids[::2, 4:] = 0  # every other row shorter: padding to trim
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    return {"idx": torch.arange(size), "labels": torch.randint(0, 2, (size,)),
            "inputs": {"student": inputs, "base": inputs}}


def counting_system(assets, sampler):
    system = DistillSystem(
        load_classifier(str(assets["student"]), 2), {"base": load_classifier(str(assets["teacher"]), 2)}, sampler,
        SingleTeacher(), LogitKD("kl"), StaticWeights(), metrics=["acc"], dev_splits=["dev"], num_labels=2)
    system.eval()  # no dropout: the losses can be recomputed
    rows = {"student": [], "student_grad": [], "teacher": []}
    system.model.register_forward_hook(
        lambda m, a, kw, out: rows["student_grad" if torch.is_grad_enabled() else "student"].append(
            kw["input_ids"].size(0)), with_kwargs=True)
    system.teachers["base"].register_forward_hook(
        lambda m, a, kw, out: rows["teacher"].append(kw["input_ids"].size(0)), with_kwargs=True)
    return system, rows


def test_efficient_runs_teacher_and_student_backward_on_the_selected_rows_only(assets):
    system, rows = counting_system(assets, MostUncertain("entropy", ratio=0.3, mode="efficient"))
    b = batch()
    loss = system.training_step(b, 0)
    assert rows == {"student": [10], "student_grad": [3], "teacher": [3]}  # scoring pass, training pass, teacher
    with torch.no_grad():
        s_all = system.model(**b["inputs"]["student"]).logits
        keep = uncertainty(s_all).sort(descending=True, stable=True).indices[:3].sort().values
        s, t = s_all[keep], system.teachers["base"](**b["inputs"]["base"]).logits[keep]
    expected = torch.nn.functional.cross_entropy(s, b["labels"][keep]) + LogitKD("kl")(s, t).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_a_pool_is_scored_in_chunks_of_similar_length(assets):
    """Pool 2 of a 10-row batch: two scoring forwards of 5 rows, the short rows apart and cut to their length, whose
    logits equal one forward over the whole batch."""
    system, rows = counting_system(assets, MostUncertain("entropy", ratio=0.2, pool=2))
    widths = []
    system.model.register_forward_hook(lambda m, a, kw, out: widths.append(tuple(kw["input_ids"].shape)),
                                       with_kwargs=True)
    b = batch()
    scores = system.score(b)
    assert widths == [(5, 4), (5, 6)]  # rows 0, 2, 4, 6, 8 end at column 4
    with torch.no_grad():
        assert torch.allclose(scores, system.model(**b["inputs"]["student"]).logits, atol=1e-5)


def test_faithful_trains_on_all_rows_and_distils_the_selected(assets):
    system, rows = counting_system(assets, MostUncertain("entropy", ratio=0.3, mode="faithful"))
    b = batch()
    loss = system.training_step(b, 0)
    assert rows == {"student": [], "student_grad": [10], "teacher": [3]}  # no scoring pass
    with torch.no_grad():
        s = system.model(**b["inputs"]["student"]).logits
        keep = uncertainty(s).sort(descending=True, stable=True).indices[:3].sort().values
        t = system.teachers["base"](**b["inputs"]["base"]).logits[keep]
    expected = torch.nn.functional.cross_entropy(s, b["labels"]) + LogitKD("kl")(s[keep], t).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_no_kd_row_leaves_a_step_of_ce_on_all_rows(assets):
    """k = ⌊0.05 · 10⌋ = 0 (sampler.min_keep=0, the authors'): no teacher runs and the loss is the CE of the batch;
    their loss is NaN there (an MSE over no rows) and their gradient CE's."""
    system, rows = counting_system(assets, MostUncertain("entropy", ratio=0.05, mode="faithful", min_keep=0))
    b = batch()
    loss = system.training_step(b, 0)
    assert rows == {"student": [], "student_grad": [10], "teacher": []}
    with torch.no_grad():
        s = system.model(**b["inputs"]["student"]).logits
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(s, b["labels"]), atol=1e-6)
    assert torch.isfinite(loss) and system.sampler.stats["selected"] == 0
    assert not [k for k in system.decisions if k.startswith("sampler_class_")]  # no KD row: no class share


@pytest.mark.parametrize("sampler", [MostUncertain("entropy", ratio=0.3, mode="efficient"),
                                     MostUncertain("margin", ratio=0.3, mode="faithful"), AllInstances()],
                         ids=["efficient", "faithful", "none"])
def test_the_class_shares_of_the_kd_rows_are_logged(assets, sampler):
    """sampler_class_<c>: the gold labels of the rows the teacher was asked about, as shares of them."""
    system, _ = counting_system(assets, sampler)
    b = batch()
    system.training_step(b, 0)
    asked = b["labels"][system.step_record["rows"]][system.step_record["kd_rows"]]
    assert asked.numel() == (10 if isinstance(sampler, AllInstances) else 3)
    shares = {k: float(total) for k, (total, steps) in system.decisions.items() if k.startswith("sampler_class_")}
    assert shares == pytest.approx({f"sampler_class_{c}": float((asked == c).float().mean()) for c in (0, 1)})
    assert sum(shares.values()) == pytest.approx(1.0)


def test_random_needs_no_scoring_pass_and_none_is_static_kd(assets):
    system, rows = counting_system(assets, RandomInstances(0.5))
    system.training_step(batch(), 0)
    assert rows == {"student": [], "student_grad": [5], "teacher": [5]}
    system, rows = counting_system(assets, AllInstances())
    system.training_step(batch(), 0)
    assert rows == {"student": [], "student_grad": [10], "teacher": [10]}


def test_selected_rows_are_trimmed_to_their_longest(assets):
    from dkd.data import select_rows

    b = batch()
    assert select_rows(b, torch.arange(10)) is b
    short = select_rows(b, torch.tensor([0, 2, 4]))  # rows with padding from column 4 on
    assert short["inputs"]["student"]["input_ids"].shape == (3, 4) and short["labels"].tolist() == b["labels"][
        [0, 2, 4]].tolist()
    kept = select_rows(b, torch.tensor([0, 2, 4]), trim=False)  # data.padding=max_length: the batch's width stays
    assert kept["inputs"]["student"]["input_ids"].shape == (3, 6)


# ------------------------------------------------------------------------------------------------ whole runs
@pytest.mark.parametrize("overrides", [
    ("sampler=entropy", "sampler.ratio=0.25"), ("sampler=margin", "sampler.mode=faithful"),
    ("sampler=random", "sampler.ratio=0.5", "trainer.accumulate_grad_batches=2"),
    ("sampler=least_confidence", "sampler.score_dropout=true", "trainer.precision=bf16-mixed"),
])
def test_runs_with_a_sampler(make_cfg, overrides):
    from dkd.run import run
    from tests.test_train import read_metrics

    cfg = make_cfg("task=sst2", *overrides)
    run(cfg)
    assert "dev/acc" in read_metrics(cfg)["dev"]
    header = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/sampler_selected" in header


@pytest.mark.slow  # 25-30 s; DDP and the samplers are each in the default run
@gloo_teardown_flaky
def test_ddp_sim_with_a_sampler(make_cfg):
    """Two ranks select from the global batch of 8 (the top 4) and their workers share the disk cache."""
    from dkd.run import run
    from tests.test_train import read_metrics

    options = ("task=sst2", "sampler=entropy", "sampler.ratio=0.5", "trainer=ddp_sim", "distill.batch_size=4")
    cfg = make_cfg(*options)
    run(cfg)
    assert read_metrics(cfg)["train_examples_per_s"] > 0
    first = read_metrics(cfg)["teacher_cache"]["base"]
    assert (first["hits"], first["misses"]) == (0, 24)  # 4 of the global batch's 8 rows, 6 steps
    again = make_cfg(*options, f"teacher.dirs.base={read_metrics(cfg)['teachers']['base']['dir']}", out="again")
    run(again)  # the spawned workers wrote into the shared disk entry: the same rows are hits now
    second = read_metrics(again)["teacher_cache"]["base"]
    assert (second["hits"], second["misses"]) == (24, 0)


def test_uncertainty_measures_refuse_a_regression_before_training(make_cfg, no_fit):
    from dkd.run import run

    with pytest.raises(UserError, match="task stsb is a regression"):
        run(make_cfg("task=stsb", "sampler=entropy"))
    assert not no_fit


def test_pool_scores_several_batches_and_trains_a_full_one(make_cfg):
    """B = 8, pool 4: the loader gives 32 rows a step, all scored, and the top r = 0.25 (8 rows) train: a full batch,
    in 4 times fewer steps (48 examples: 2 steps an epoch, the second of 16 rows)."""
    from dkd.run import run
    from tests.test_train import read_metrics

    cfg = make_cfg("task=sst2", "sampler=entropy", "sampler.ratio=0.25", "sampler.pool=4")
    run(cfg)
    f = read_metrics(cfg)["flops"]
    assert f["examples"] == 48
    rows = [line.split(",") for line in (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()]
    col = rows[0].index("train/sampler_selected")
    assert [float(r[col]) for r in rows[1:] if r[col]] == [0.25, 0.25]  # 8 of 32, then 4 of 16


@pytest.mark.parametrize("sampler, options, message", [
    ("none", ["sampler.pool=4"], "sampler=none keeps every row"),
    ("entropy", ["sampler.pool=4", "sampler.mode=faithful"], "Use sampler.mode=efficient"),
    ("random", ["sampler.pool=0"], r"sampler.pool=0: must be an integer >= 1"),
])
def test_pool_options_are_checked(make_cfg, no_fit, sampler, options, message):
    from dkd.run import run

    with pytest.raises(UserError, match=message):
        run(make_cfg("task=sst2", f"sampler={sampler}", *options))
    assert not no_fit
