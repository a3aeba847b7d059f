"""Hidden-state alignment (objective=kd_pt): ℓ^PT pinned on fixed states (with and without the padding mask, along
either dimension), the layer map, the projection between hidden sizes, and runs end to end with the strategies."""
import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from dkd.errors import UserError
from dkd.run import run
from dkd.strategies.objectives import LogitAndHiddenKD, hidden_alignment, uniform_layer_map
from tests.conftest import make_tiny_model

# (n=2 rows, 2 layer pairs, 3 positions, hidden 2); row 0's last position is padding
S = torch.tensor([[[[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], [[0.0, 1.0], [2.0, 2.0], [-1.0, 0.5]]],
                  [[[1.0, -1.0], [0.0, 2.0], [1.5, 1.0]], [[2.0, 0.0], [1.0, 1.0], [0.5, -2.0]]]])
T = torch.tensor([[[[2.0, 1.0], [0.5, 0.5], [-1.0, 1.0]], [[1.0, 1.0], [0.0, 3.0], [2.0, 0.0]]],
                  [[[0.5, -0.5], [1.0, 1.0], [0.0, 2.0]], [[1.0, 1.0], [2.0, -1.0], [1.0, 1.0]]]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def by_hand(student, teacher, mask, dim):
    """ℓ^PT written as loops: for each row and pair, normalise, then average the squared gap over kept positions."""
    out = []
    for i in range(student.size(0)):
        keep = [p for p in range(student.size(2)) if mask is None or mask[i, p]]
        total = 0.0
        for k in range(student.size(1)):
            s, t = student[i, k, keep], teacher[i, k, keep]  # (positions, hidden)
            s, t = s / s.norm(dim=dim, keepdim=True), t / t.norm(dim=dim, keepdim=True)
            total += ((s - t) ** 2).mean().item()
        out.append(total)
    return out


@pytest.mark.parametrize("masked, normalize, expected", [
    (False, "hidden", [1.901182770729065, 1.0764514207839966]),
    (True, "hidden", [1.0510070323944092, 1.0764514207839966]),
    (False, "positions", [1.0296447277069092, 0.9743198752403259]),
    (True, "positions", [0.7169317007064819, 0.9743198752403259]),
])
def test_hidden_alignment_pinned(masked, normalize, expected):
    mask = MASK if masked else None
    got = hidden_alignment(S, T, mask, normalize)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
    assert got.tolist() == pytest.approx(by_hand(S, T, mask, -1 if normalize == "hidden" else 0), abs=1e-6)


def test_padding_changes_nothing_when_masked():
    padded_s = torch.cat([S, torch.randn(2, 2, 2, 2)], 2)
    padded_t = torch.cat([T, torch.randn(2, 2, 2, 2)], 2)
    mask = torch.cat([MASK, torch.zeros(2, 2, dtype=torch.long)], 1)
    assert torch.allclose(hidden_alignment(padded_s, padded_t, mask), hidden_alignment(S, T, MASK), atol=1e-6)


def test_static_faithful_term_is_the_authors_pkd_loss():
    """Their static path: Σ_l MSE(normalize(h_s, dim=1), normalize(h_t, dim=1)) over (batch, positions, hidden)."""
    authors = sum(F.mse_loss(F.normalize(S[:, k], p=2, dim=1), F.normalize(T[:, k], p=2, dim=1)) for k in range(2))
    assert hidden_alignment(S, T, None, "positions").mean().item() == pytest.approx(authors.item(), abs=1e-6)
    # and their uncertainty path: normalise along hidden, mean over positions and hidden, sum over layers, per row
    per_row = F.mse_loss(F.normalize(S, dim=-1), F.normalize(T, dim=-1), reduction="none").mean(-1).mean(-1).sum(1)
    assert torch.allclose(hidden_alignment(S, T, None, "hidden"), per_row, atol=1e-6)


def test_uniform_layer_map():
    assert uniform_layer_map(3, 6) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert uniform_layer_map(3, 12) == [(0, 0), (1, 4), (2, 8), (3, 12)]
    assert uniform_layer_map(6, 12) == [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]
    assert uniform_layer_map(4, 6) == [(0, 0), (1, 1), (2, 3), (3, 4), (4, 6)]
    assert uniform_layer_map(3, 12, first=1) == [(1, 4), (2, 8), (3, 12)]
    # [CLS] alignment leaves out the embeddings (their first-token state is the same for every input)
    assert LogitAndHiddenKD().plan(3, {"base": 6}, {"base": True}) == {"base": [(1, 2), (2, 4), (3, 6)]}
    assert LogitAndHiddenKD(positions="all").plan(3, {"base": 6}, {"base": True})["base"][0] == (0, 0)


def config(hidden: int, layers: int) -> BertConfig:
    return BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=8)


def test_projection_only_where_hidden_sizes_differ_and_it_learns():
    objective = LogitAndHiddenKD()
    objective.plan(2, {"base": 4, "large": 6}, {"base": True, "large": False})
    objective.setup(config(4, 2), {"base": config(4, 4), "large": config(6, 6)})
    assert list(objective.projections) == ["large"] and objective.maps["large"] == [(1, 3), (2, 6)]
    assert objective.teacher_request("base") == ([2, 4], "cls")
    with torch.no_grad():
        objective.projections["large"].weight.copy_(torch.arange(24.0).view(6, 4) / 10 - 1)
        objective.projections["large"].bias.fill_(0.1)
    torch.manual_seed(0)
    states = tuple(torch.randn(2, 3, 4) for _ in range(3))
    student = {"logits": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "hidden_states": states,
               "attention_mask": torch.ones(2, 3)}
    teacher = {"logits": torch.tensor([[2.0, 0.0], [0.0, 2.0]]), "hidden": torch.randn(2, 2, 1, 6)}
    pt = objective.terms(student, {"large": teacher})["pt"]
    projected = objective.projections["large"](torch.stack([states[1], states[2]], 1)[:, :, :1])
    assert torch.allclose(pt, hidden_alignment(projected, teacher["hidden"]), atol=1e-6)
    assert pt.tolist() == pytest.approx([0.9284027814865112, 1.105206847190857], abs=1e-5)
    pt.sum().backward()
    assert objective.projections["large"].weight.grad.abs().sum() > 0


def test_bad_layer_maps_and_positions_are_refused():
    with pytest.raises(UserError, match="objective.positions='first'"):
        LogitAndHiddenKD(positions="first")
    with pytest.raises(UserError, match="objective.layers='even'"):
        LogitAndHiddenKD(layers="even")
    with pytest.raises(UserError, match=r"objective.layers=\[1, 2\]: give \[student, teacher\] pairs"):
        LogitAndHiddenKD(layers=[1, 2]).plan(2, {"base": 4}, {"base": True})
    with pytest.raises(UserError, match="with objective.positions=cls .* every value becomes ±1"):
        LogitAndHiddenKD(normalize="positions")
    assert LogitAndHiddenKD(positions="all", normalize="positions").normalize == "positions"
    with pytest.raises(UserError, match=r"0..2 \(student\) and 0..4 \(base\).*got \[\(3, 4\)\]"):
        LogitAndHiddenKD(layers=[[0, 0], [3, 4]]).plan(2, {"base": 4}, {"base": True})
    with pytest.raises(UserError, match="not for the large teacher: add objective.layers.large"):
        LogitAndHiddenKD(layers={"base": [[0, 0]]}).plan(2, {"base": 4, "large": 6}, {"base": True, "large": True})
    with pytest.raises(UserError, match="the large teacher reads another tokenization.*objective.positions=cls"):
        LogitAndHiddenKD(positions="all").plan(2, {"large": 6}, {"large": False})
    assert LogitAndHiddenKD(faithful=True).positions == "all" and LogitAndHiddenKD(faithful=True).mask is False


# ------------------------------------------------------------------------------------------------ end to end
def result(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def logged(cfg) -> list[dict]:
    return list(csv.DictReader(open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")))


def test_kd_pt_with_uncertainty_weights_runs_and_caches_cls_states(make_cfg):
    first = make_cfg("task=sst2", "objective=kd_pt", "weighting=uncertainty", out="first")
    run(first)
    r = result(first)
    assert r["layer_map"] == {"base": [[1, 2], [2, 4]]}
    assert {"weighting_u", "weighting_kd", "weighting_pt"} <= set(r["decisions"])
    rows = logged(first)
    assert any(row.get("train/pt") for row in rows) and any(row.get("train/weighting_pt") for row in rows)
    second = make_cfg("task=sst2", "objective=kd_pt", "weighting=uncertainty",
                      f"teacher.dirs.base={r['teachers']['base']['dir']}", out="second")
    run(second)
    cache = result(second)["teacher_cache"]["base"]
    assert (cache["hits"], cache["misses"]) == (48, 0) and "hidden" in json.loads(
        (Path(cache["folder"]) / "key.json").read_text())["outputs"]
    losses = [[float(row["train/pt"]) for row in logged(cfg) if row.get("train/pt")] for cfg in (first, second)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_all_tokens_bypass_the_cache_and_say_so(make_cfg, caplog):
    cfg = make_cfg("task=sst2", "objective=kd_pt", "objective.positions=all")
    with caplog.at_level("INFO"):
        run(cfg)
    assert result(cfg)["teacher_cache"]["base"]["mode"] == "off (all-token hidden states)"
    assert "needs its hidden states at every token" in caplog.text


def test_all_tokens_with_another_tokenizer_is_refused_before_training(make_cfg, no_fit):
    with pytest.raises(UserError, match="large teacher reads another tokenization"):
        run(make_cfg("task=sst2", "teacher=large", "adoption=single", "objective=kd_pt", "objective.positions=all"))
    with pytest.raises(UserError, match="weighting=uncertainty weighs logit KD against hidden-state alignment"):
        run(make_cfg("task=sst2", "weighting=uncertainty"))
    assert no_fit == []


def test_the_three_strategies_combine_in_one_run(make_cfg, tmp_path):
    """Adoption, sampler and weighting together, with a teacher of another tokenizer and hidden size (projected)."""
    wide = make_tiny_model(tmp_path / "wide", vocab_order=-1, layers=2, hidden=48)
    cfg = make_cfg("task=rte", "teacher=both", f"backbone.teachers.large={wide}", "adoption=soft_instance",
                   "sampler=entropy", "sampler.ratio=0.5", "objective=kd_pt", "weighting=uncertainty")
    run(cfg)
    r = result(cfg)
    assert r["layer_map"] == {"base": [[1, 2], [2, 4]], "large": [[1, 1], [2, 2]]}
    assert {"sampler_selected", "adoption_u", "adoption_weight_large", "weighting_pt"} <= set(r["decisions"])
    ckpt = torch.load(r["selected"].removeprefix("checkpoint "), map_location="cpu", weights_only=False)
    assert ckpt["state_dict"]["objective.projections.large.weight"].shape == (48, 32)
    assert not any(k.startswith("teachers.") for k in ckpt["state_dict"])
    from safetensors.torch import load_file

    exported = load_file(Path(r["student_dir"]) / "model.safetensors")
    assert not any("projection" in k for k in exported)


def test_hidden_states_are_asked_for_only_when_the_objective_aligns_them():
    from dkd.cache import TeacherOutputs
    from dkd.module import DistillSystem
    from dkd.strategies.adoption import SingleTeacher
    from dkd.strategies.objectives import LogitKD
    from dkd.strategies.samplers import AllInstances
    from dkd.strategies.weighting import StaticWeights
    from tests.test_cache import batch, tiny_teacher

    asked = []
    student, teacher = tiny_teacher(1), tiny_teacher(2)
    for model in (student, teacher):
        model.register_forward_hook(lambda m, a, kw, out: asked.append(bool(kw.get("output_hidden_states"))),
                                    with_kwargs=True)
    b = batch([0, 1, 2])
    b["inputs"]["student"] = b["inputs"]["base"]
    for objective, expected in ((LogitKD(), [False, False]), (LogitAndHiddenKD(), [True, True])):
        asked.clear()
        if objective.needs_hidden_states:
            objective.plan(student.config.num_hidden_layers, {"base": teacher.config.num_hidden_layers}, {"base": True})
            objective.setup(student.config, {"base": teacher.config})
        request = objective.teacher_request("base") if objective.needs_hidden_states else None
        system = DistillSystem(student, {"base": teacher}, AllInstances(), SingleTeacher(), objective, StaticWeights(),
                               teacher_outputs={"base": TeacherOutputs(teacher, "base", hidden=request)},
                               metrics=["acc"], dev_splits=["dev"], num_labels=2)
        system.training_step(b, 0)
        assert asked == expected


def test_the_projection_trains_with_the_student():
    from types import SimpleNamespace

    from dkd.module import DistillSystem
    from dkd.strategies.adoption import SingleTeacher
    from dkd.strategies.samplers import AllInstances
    from dkd.strategies.weighting import StaticWeights
    from tests.test_cache import tiny_teacher

    student, teacher = tiny_teacher(1), tiny_teacher(2)
    objective = LogitAndHiddenKD()
    objective.plan(student.config.num_hidden_layers, {"large": 2}, {"large": True})
    objective.setup(student.config, {"large": config(12, 2)})
    system = DistillSystem(student, {"large": teacher}, AllInstances(), SingleTeacher(), objective, StaticWeights(),
                           metrics=["acc"], dev_splits=["dev"], num_labels=2)
    system._trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimizer = system.configure_optimizers()["optimizer"]
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(objective.projections["large"].weight) in trained and id(objective.projections["large"].bias) in trained
    assert not any(id(p) in trained for p in teacher.parameters())
