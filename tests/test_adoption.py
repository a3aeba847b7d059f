"""Teacher adoption: each mode's KD loss pinned on a fixed batch through the real training step and recomputed from
its formula; which rows reach which teacher; gradient through the weights only when asked; three teachers; whole
runs with two real-size-ordered teachers of different tokenizers."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from dkd.errors import UserError
from dkd.module import DistillSystem
from dkd.strategies.adoption import Ensemble, HardSplit, SingleTeacher, SoftBatch, SoftInstance, interpolation_weights
from dkd.strategies.objectives import LogitKD
from dkd.strategies.samplers import AllInstances, MostUncertain
from dkd.strategies.uncertainty import uncertainty
from dkd.strategies.weighting import StaticWeights, UncertaintyWeights

# u by row (entropy): row 4 most uncertain, then 1, 2, 0, 3
S = torch.tensor([[3.0, -1.0], [0.2, 0.0], [1.0, 0.5], [-2.0, 2.5], [0.0, 0.1]])
T = {"small": torch.tensor([[1.0, 0.0], [0.5, 0.5], [2.0, -1.0], [-1.0, 1.0], [0.0, 0.3]]),
     "large": torch.tensor([[2.0, -2.0], [1.0, -0.5], [0.0, 1.0], [-3.0, 3.0], [0.5, 0.0]])}
KD = LogitKD("kl", 2.0)
U = uncertainty(S)


class Table(nn.Module):
    """A model whose logits for row i (``input_ids[:, 0] = i``) are row i of ``logits``, so that the step sees fixed
    outputs; ``extra`` parameters make it larger (the pool is ordered by parameter count)."""

    def __init__(self, logits: torch.Tensor, extra: int = 0):
        super().__init__()
        self.table = nn.Parameter(logits.clone())
        self.extra = nn.Parameter(torch.zeros(extra))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


LABELS = torch.tensor([0, 0, 1, 1, 1])


def step(adoption, teachers=("small", "large"), sampler=None, weighting=None) -> tuple[torch.Tensor, DistillSystem]:
    """The loss of DistillSystem.training_step on the fixed batch of S and T (KD alone: α_ce = 0 unless
    ``weighting`` says otherwise), and the system (its student's logits are ``system.model.table``)."""
    pool = {t: Table(T[t], extra=10 * k) for k, t in enumerate(teachers)}  # small < large
    system = DistillSystem(Table(S), pool, sampler or AllInstances(), adoption, LogitKD("kl", 2.0),
                           weighting or StaticWeights(0.0, 1.0), metrics=["acc"], dev_splits=["dev"], num_labels=2)
    system.log = system.log_dict = lambda *args, **kwargs: None  # no Trainer attached
    rows = {"input_ids": torch.tensor([[i, 1] for i in range(5)]), "attention_mask": torch.ones(5, 2, dtype=torch.long)}
    batch = {"idx": torch.arange(5), "labels": LABELS, "inputs": {"student": rows, **{t: rows for t in teachers}}}
    return system.training_step(batch, 0), system


def kd(adoption, teachers=("small", "large")):
    """The KD term as the real step computes it."""
    return step(adoption, teachers)[0]


def ell(t, rows=slice(None)):
    return KD(S[rows], T[t][rows])


@pytest.mark.parametrize("adoption, pinned, formula", [
    (Ensemble("losses"), 0.25447791814804077, lambda: (ell("small").mean() + ell("large").mean()) / 2),
    (Ensemble("weights", {"small": 0.3, "large": 1.5}), 0.2918117046356201,
     lambda: 0.3 * ell("small").mean() + 1.5 * ell("large").mean()),
    (HardSplit(), 0.069801464676857, lambda: (ell("small", [1, 4]).sum() + ell("large", [0, 2, 3]).sum()) / 5),
    (HardSplit(reduction="sum_of_means"), 0.1179991215467453,
     lambda: ell("small", [1, 4]).mean() + ell("large", [0, 2, 3]).mean()),
    (SoftBatch(), 0.29130497574806213, lambda: U.mean() * ell("small").mean() + (1 - U.mean()) * ell("large").mean()),
    (SoftInstance(), 0.15986372530460358, lambda: (U * ell("small") + (1 - U) * ell("large")).mean()),
], ids=["ensemble-losses", "ensemble-weights", "hard", "hard-sum_of_means", "soft", "soft_instance"])
def test_each_mode_is_pinned_and_follows_its_formula(adoption, pinned, formula):
    assert kd(adoption).item() == pytest.approx(pinned, rel=1e-6)
    assert kd(adoption).item() == pytest.approx(formula().item(), rel=1e-6)


def test_ensemble_of_probabilities_distils_the_average_distribution():
    assert kd(Ensemble("probs")).item() == pytest.approx(0.07586751878261566, rel=1e-6)
    fused = KD.fuse([T["small"], T["large"]])
    average = (torch.softmax(T["small"] / 2, -1) + torch.softmax(T["large"] / 2, -1)) / 2
    assert torch.allclose(torch.softmax(fused / 2, -1), average, atol=1e-6)
    assert torch.allclose(LogitKD("mse").fuse([T["small"], T["large"]]), (T["small"] + T["large"]) / 2)
    assert kd(SingleTeacher(), ("small",)).item() == pytest.approx(0.3930184245109558, rel=1e-6)


def test_hard_split_sends_the_most_uncertain_rows_to_the_smaller_teacher():
    assert U.argsort(descending=True).tolist() == [4, 1, 2, 0, 3]
    small, large = HardSplit()(S, torch.arange(5), ["small", "large"])
    assert (small.teachers, small.index.tolist(), large.teachers, large.index.tolist()) == \
        (("small",), [1, 4], ("large",), [0, 2, 3])  # ⌊5/2⌋ to the smaller, as the authors' bsz // 2
    rows = torch.tensor([0, 2, 3, 4])  # KD rows chosen by a sampler: positions within the trained rows
    small, large = HardSplit(split=0.25)(S, rows, ["small", "large"])
    assert small.index.tolist() == [4] and large.index.tolist() == [0, 2, 3]


def test_weights_carry_no_gradient_unless_asked():
    for adoption in (SoftBatch(), SoftInstance()):
        student = S.clone().requires_grad_()
        routes = adoption(student, torch.arange(5), ["small", "large"])
        assert all(not torch.is_tensor(r.weight) or not r.weight.requires_grad for r in routes)
    for adoption in (SoftBatch(detach=False), SoftInstance(detach=False)):
        student = S.clone().requires_grad_()
        assert all(r.weight.requires_grad for r in adoption(student, torch.arange(5), ["small", "large"]))
    # the authors' way changes the gradient the student gets: d/dz of u·ℓ includes ℓ·du/dz
    grads = []
    for detach in (True, False):
        loss, system = step(SoftInstance(detach=detach))
        loss.backward()
        grads.append(system.model.table.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_three_teachers_interpolate_between_neighbours():
    w = interpolation_weights(torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]), 3)
    assert w.tolist() == [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]]
    assert torch.allclose(interpolation_weights(U, 2), torch.stack([U, 1 - U], -1))
    T["mid"] = (T["small"] + T["large"]) / 2
    try:
        bins = HardSplit()(S, torch.arange(5), ["small", "mid", "large"])
        assert [b.index.tolist() for b in bins] == [[4], [1, 2], [0, 3]]  # cuts at ⌊5/3⌋, ⌊10/3⌋
        routes = SoftInstance()(S, torch.arange(5), ["small", "mid", "large"])
        weights = interpolation_weights(U, 3)
        expected = sum((weights[:, k] * ell(t)).mean() for k, t in enumerate(["small", "mid", "large"]))
        assert kd(SoftInstance(), ("small", "mid", "large")).item() == pytest.approx(expected.item(), rel=1e-6)
        for r in routes:  # a teacher runs only on rows it weighs
            k = ["small", "mid", "large"].index(r.teachers[0])
            assert (interpolation_weights(U, 3)[r.index, k] > 0).all()
    finally:
        del T["mid"]


@pytest.mark.parametrize("adoption, teachers, message", [
    (HardSplit(), ["base"], "adoption=hard chooses among two or more teachers.*use teacher=both"),
    (SoftBatch(), ["base"], "adoption=soft chooses among two or more teachers"),
    (Ensemble("weights", {"base": 1.0}), ["base", "large"], "one adoption.weights.<teacher> per teacher"),
    (HardSplit(split=[0.5, 0.6]), ["base", "large"], "shares summing to 1"),
    (SingleTeacher(), ["base", "large"], "adoption=single takes one teacher"),
])
def test_bad_pools_are_refused(adoption, teachers, message):
    with pytest.raises(UserError, match=message):
        adoption.check(teachers)


# ------------------------------------------------------------------------------------------------- whole runs
class CountTeacherRows(pl.Callback):
    """Rows per forward of each teacher while training (``+callbacks.count._target_=tests.test_adoption.…``)."""

    calls: dict = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        if not hasattr(pl_module, "teachers"):  # a teacher's fine-tuning
            return
        CountTeacherRows.calls = {name: [] for name in pl_module.teachers}
        for name, teacher in pl_module.teachers.items():
            teacher.register_forward_hook(
                lambda m, a, kw, out, name=name: self.calls[name].append(kw["input_ids"].size(0)), with_kwargs=True)


def counted_run(make_cfg, *overrides):
    """A run with two teachers whose forwards are counted, the tiny "large" (2 layers, reversed vocabulary: its own
    token ids) being the smaller by parameter count."""
    from dkd.run import run

    cfg = make_cfg("task=sst2", "teacher=both", "distill.teacher_cache=off",
                   "+callbacks.count._target_=tests.test_adoption.CountTeacherRows", *overrides)
    run(cfg)
    return cfg, CountTeacherRows.calls, json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_hard_runs_each_teacher_on_its_own_rows_only(make_cfg):
    cfg, calls, metrics = counted_run(make_cfg, "adoption=hard")
    # 48 rows in batches of 8: the more uncertain 4 of each batch go to the smaller teacher ("large" here: 2 layers)
    assert calls == {"base": [4] * 6, "large": [4] * 6}
    header = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()[0]
    for column in ("train/adoption_share_large", "train/adoption_weight_base", "train/adoption_u", "train/kd_large"):
        assert column in header
    assert (Path(cfg.paths.output_dir) / "curves.png").stat().st_size > 0  # with a panel of the strategies
    decided = metrics["decisions"]
    assert decided["adoption_share_large"] == decided["adoption_share_base"] == 0.5 and 0 < decided["adoption_u"] < 1
    per = metrics["flops"]["teacher_per_example"]
    # each teacher on half the rows, against both teachers on every row (the authors' way): about half the cost
    assert per["base"] + per["large"] == pytest.approx(metrics["flops"]["gflops_per_example"]["teacher"], rel=1e-3)
    assert 0.3 < metrics["flops"]["gflops_per_example"]["teacher"] / per["all_teachers_on_every_row"] <= 0.5 + 1e-3


@pytest.mark.parametrize("adoption", [pytest.param("ensemble", marks=pytest.mark.slow),
                                      pytest.param("soft", marks=pytest.mark.slow), "soft_instance"])
def test_pool_modes_run_with_heterogeneous_teachers(make_cfg, adoption):
    cfg, calls, metrics = counted_run(make_cfg, f"adoption={adoption}")
    assert calls["large"] == [8] * 6  # the smaller teacher (2 layers) weighs every row: w = u > 0
    if adoption == "ensemble":
        assert calls["base"] == [8] * 6
    else:  # the larger weighs a row by 1 − u (per row, or the batch's mean): not run where u = 1 exactly (a flat
        # prediction of the untrained student, which depends on float rounding, so on the thread count)
        assert all(0 < c <= 8 for c in calls["base"]) and len(calls["base"]) <= 6
        assert sum(calls["base"]) == round(metrics["decisions"]["adoption_share_base"] * 48)
    assert "dev/acc" in metrics["dev"]


def test_pick_one_teacher_of_a_pool_and_the_faithful_preset():
    assert SingleTeacher("largest")(S, torch.arange(5), ["small", "large"])[0].teachers == ("large",)
    assert SingleTeacher("smallest")(S, torch.arange(5), ["small", "large"])[0].teachers == ("small",)
    SingleTeacher("largest").check(["small", "large"])  # a pool is fine when one is picked
    hard = HardSplit(faithful=True)
    assert hard.reduction == "sum_of_means" and not hard.detach
    assert kd(hard).item() == pytest.approx(0.1179991215467453, rel=1e-6)
    ensemble = Ensemble(faithful=True)
    ensemble.check(["small", "large"])
    assert kd(ensemble).item() == pytest.approx((ell("small").mean() + ell("large").mean()).item(), rel=1e-6)
    student = S.clone().requires_grad_()
    assert all(r.weight.requires_grad for r in SoftBatch(faithful=True)(student, torch.arange(5), ["small", "large"]))


def test_faithful_ensemble_refuses_a_combine_it_would_replace(make_cfg, no_fit):
    """``faithful=true`` is the authors' ensemble, fixed weights (α = 1.0 per teacher unless given): any other explicit
    ``combine`` contradicts it and is refused, before any training, naming both options and the fix."""
    from dkd.run import run

    with pytest.raises(UserError, match=r"adoption.faithful=true .*adoption.combine=losses.*faithful=false"):
        Ensemble("losses", faithful=True)
    cfg = make_cfg("task=sst2", "teacher=both", "adoption=ensemble", "adoption.combine=losses",
                   "adoption.faithful=true")
    with pytest.raises(UserError, match=r"adoption.faithful=true .*adoption.combine=losses"):
        run(cfg)
    assert not no_fit
    with pytest.raises(UserError, match=r"adoption.combine=probs asks for another"):
        Ensemble("probs", faithful=True)
    assert (Ensemble().combine, Ensemble(faithful=True).combine) == ("probs", "weights")  # combine=null, the default
    weighted = Ensemble("weights", {"small": 0.3, "large": 1.5}, faithful=True)  # α given: the authors' way too
    weighted.check(["small", "large"])
    assert kd(weighted).item() == pytest.approx(0.2918117046356201, rel=1e-6)


def test_no_uncertainty_is_reported_on_a_regression():
    """An ensemble on a one-output task (STS-B) has no u: no ``u`` in its stats (it was the mean row index)."""
    rows = torch.arange(5)
    ensemble = Ensemble("losses")
    ensemble.check(["small", "large"], num_labels=1)
    ensemble(torch.randn(5, 1), rows, ["small", "large"])
    assert "u" not in ensemble.stats
    assert ensemble.stats["share_small"] == ensemble.stats["share_large"] == 1.0
    ensemble(S, rows, ["small", "large"])  # a classification has one
    assert ensemble.stats["u"].item() == pytest.approx(U.mean().item())


def test_adoption_with_data_selection_and_the_cache(make_cfg):
    """Selection first, then adoption on the selected rows; the second run answers both teachers from the cache."""
    from dkd.run import run

    options = ("task=sst2", "teacher=both", "adoption=hard", "sampler=entropy", "sampler.ratio=0.5")
    first = make_cfg(*options, out="first")
    run(first)
    metrics = json.loads((Path(first.paths.output_dir) / "metrics.json").read_text())
    dirs = [f"teacher.dirs.{role}={t['dir']}" for role, t in metrics["teachers"].items()]
    cache = {r: (c["hits"], c["misses"]) for r, c in metrics["teacher_cache"].items()}
    assert cache == {"base": (0, 12), "large": (0, 12)}
    second = make_cfg(*options, *dirs, out="second")
    run(second)
    again = json.loads((Path(second.paths.output_dir) / "metrics.json").read_text())
    cache = {r: (c["hits"], c["misses"]) for r, c in again["teacher_cache"].items()}
    assert cache == {"base": (12, 0), "large": (12, 0)}
    assert again["dev"] == metrics["dev"]
    # each teacher's weights recorded (sha256 of model.safetensors), whether found in the store or named as is
    from dkd.models import file_digest
    assert {r: t["weights"] for r, t in again["teachers"].items()} == \
        {r: file_digest(Path(t["dir"]) / "model.safetensors") for r, t in metrics["teachers"].items()}
    assert metrics["teachers"]["base"]["weights"] != metrics["teachers"]["large"]["weights"]


@pytest.mark.slow
def test_a_third_teacher_is_added_in_config(make_cfg, tmp_path):
    from tests.conftest import make_tiny_model

    mid = make_tiny_model(tmp_path / "tiny-mid", layers=3)
    cfg, calls, metrics = counted_run(make_cfg, f"+backbone.teachers.mid={mid}", "teacher.names=[base,mid,large]",
                                      "adoption=hard")
    # sizes: large (2 layers) < mid (3) < base (4); 8 rows a batch cut at ⌊8/3⌋ and ⌊16/3⌋
    assert calls == {"large": [2] * 6, "mid": [3] * 6, "base": [3] * 6}
    assert set(metrics["teachers"]) == {"base", "mid", "large"}


@pytest.mark.parametrize("adoption", [SoftBatch(faithful=True), HardSplit(), SoftInstance(), Ensemble()],
                         ids=["soft", "hard", "soft_instance", "ensemble"])
def test_a_step_without_kd_rows_decides_nothing(adoption):
    """sampler.min_keep=0 with r·B < 1: no route, and no statistic (a NaN weight or a 0 share would skew the run's
    averages)."""
    assert adoption(S, torch.arange(0), ["small", "large"]) == [] and adoption.stats == {}


def test_the_step_weighs_each_route_by_its_rows_weights_and_the_objectives_weights():
    """soft_instance routes weigh row i by u_i (small) and 1 − u_i (large); weighting=uncertainty_kd weighs its KD
    term by u_i again: L = mean_i u_i (u_i ℓ_i(small) + (1 − u_i) ℓ_i(large)). Without either factor the step would
    give another number."""
    loss, _ = step(SoftInstance(), weighting=UncertaintyWeights("uncertainty_kd", alpha_ce=0.0))
    expected = (U * (U * ell("small") + (1 - U) * ell("large"))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() == pytest.approx(0.11647943407297134, rel=1e-6)
    assert abs(loss.item() - kd(SoftInstance()).item()) > 0.04  # the weighting's factor counts


def test_the_faithful_mode_trains_every_row_and_distils_the_most_uncertain():
    """sampler.mode=faithful, r = 0.4: CE over all 5 rows, KD over the k = 2 most uncertain (rows 4 and 1)."""
    loss, _ = step(SingleTeacher(), ("small",), MostUncertain(ratio=0.4, mode="faithful"), StaticWeights(1.0, 1.0))
    expected = torch.nn.functional.cross_entropy(S, LABELS) + ell("small", [1, 4]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_efficient_mode_trains_and_distils_the_selected_rows_only():
    """sampler.mode=efficient, r = 0.4: CE and KD over rows 4 and 1 alone, the hard split cutting them in two."""
    loss, system = step(HardSplit(), sampler=MostUncertain(ratio=0.4), weighting=StaticWeights(1.0, 1.0))
    expected = (torch.nn.functional.cross_entropy(S[[1, 4]], LABELS[[1, 4]])
                + (ell("small", [4]).sum() + ell("large", [1]).sum()) / 2)  # u: row 4 above row 1
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert system.step_record["rows"].tolist() == [1, 4]
