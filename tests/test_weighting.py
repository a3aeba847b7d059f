"""Objective weighting: the weights move the right way with u, carry no gradient unless asked, and the README
plug-in's formula is reproduced."""
import math

import pytest
import torch
import torch.nn.functional as F

from dkd.errors import UserError
from dkd.strategies.objectives import LogitAndHiddenKD, LogitKD
from dkd.strategies.weighting import StaticWeights, UncertaintyWeights

# row 0: the student is sure (u ≈ 0.02), row 1: unsure (u ≈ 0.99)
LOGITS = torch.tensor([[4.0, -2.0], [0.1, 0.0]])
TEACHER = torch.tensor([[2.0, -1.0], [-1.0, 1.0]])
LABELS = torch.tensor([0, 1])


def test_uncertain_rows_lean_on_hidden_states_under_uncertainty_and_on_kd_under_the_reverse():
    w = UncertaintyWeights("uncertainty").instance_weights(LOGITS)
    assert w["pt"][1] > w["pt"][0] and w["kd"][1] < w["kd"][0]
    assert torch.allclose(w["kd"] + w["pt"], torch.ones(2))
    r = UncertaintyWeights("uncertainty_r").instance_weights(LOGITS)
    assert r["pt"][1] < r["pt"][0] and r["kd"][1] > r["kd"][0]
    assert torch.allclose(r["kd"], w["pt"]) and torch.allclose(r["pt"], w["kd"])
    plugin = UncertaintyWeights("uncertainty_kd").instance_weights(LOGITS)
    assert torch.allclose(plugin["kd"], w["pt"]) and torch.equal(plugin["pt"], torch.ones(2))
    assert StaticWeights().instance_weights(LOGITS)["kd"].tolist() == [1.0, 1.0]


def test_weights_pinned():
    w = UncertaintyWeights("uncertainty").instance_weights(LOGITS)
    assert w["pt"].tolist() == pytest.approx([0.0249751, 0.9981988], abs=1e-6)
    # u_1 by hand: H(p) / log 2 with p = softmax([0.1, 0])
    p = 1 / (1 + math.exp(-0.1))
    assert w["pt"][1].item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2), abs=1e-6)


def test_no_gradient_through_the_weights_unless_asked():
    logits = LOGITS.clone().requires_grad_(True)
    w = UncertaintyWeights("uncertainty").instance_weights(logits)
    assert not w["kd"].requires_grad and not w["pt"].requires_grad
    w = UncertaintyWeights("uncertainty", detach=False).instance_weights(logits)
    (w["pt"] * torch.tensor([1.0, 2.0])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert UncertaintyWeights("uncertainty", faithful=True).detach is False
    assert UncertaintyWeights("uncertainty_kd", faithful=True).detach is True  # the README plug-in: u under no_grad


def test_uncertainty_kd_is_the_readme_plugin():
    """The authors' README ``dynamic_kd_loss`` (its formula written out here, with its 1e-6 inside the log), plus CE."""
    t = 2.0
    probs = F.softmax(LOGITS, -1)
    weight = -(probs * torch.log(probs + 1e-6)).sum(1) / math.log(LOGITS.size(1))
    per_row = F.kl_div(F.log_softmax(LOGITS / t, -1), F.softmax(TEACHER / t, -1), reduction="none").sum(-1) * t**2
    readme = F.cross_entropy(LOGITS, LABELS) + (per_row * weight).mean()
    weighting = UncertaintyWeights("uncertainty_kd")
    kd = (weighting.instance_weights(LOGITS)["kd"] * LogitKD("kl", t)(LOGITS, TEACHER)).mean()
    ours = weighting(F.cross_entropy(LOGITS, LABELS), {"kd": kd})
    assert ours.item() == pytest.approx(readme.item(), abs=1e-5)
    assert ours.item() == pytest.approx(0.6246474385261536, abs=1e-6)


def test_alphas_scale_each_term():
    w = UncertaintyWeights("uncertainty", alpha_ce=0.5, alpha_kd=2.0, alpha_pt=3.0)
    assert w(torch.tensor(1.0), {"kd": torch.tensor(1.0), "pt": torch.tensor(2.0)}).item() == pytest.approx(8.5)


def test_bad_options_and_combinations_are_refused():
    with pytest.raises(UserError, match="weighting.rule='uncertainy'"):
        UncertaintyWeights("uncertainy")
    with pytest.raises(UserError, match="weighting.measure='entropie'"):
        UncertaintyWeights(measure="entropie")
    with pytest.raises(UserError, match="use objective=kd_pt, or weighting=uncertainty_kd"):
        UncertaintyWeights("uncertainty").check(LogitKD(), 2)
    with pytest.raises(UserError, match="this task is a regression: use weighting=static"):
        UncertaintyWeights("uncertainty").check(LogitAndHiddenKD(), 1)
    UncertaintyWeights("uncertainty").check(LogitAndHiddenKD(), 2)
    UncertaintyWeights("uncertainty_kd").check(LogitKD(), 3)
