"""The distillation system: frozen teachers (eval mode, no grad, not checkpointed) and the wiring of a step."""
import pytest
import torch

from dkd.models import load_classifier
from dkd.module import DistillSystem
from dkd.strategies.adoption import SingleTeacher
from dkd.strategies.objectives import LogitKD
from dkd.strategies.samplers import AllInstances
from dkd.strategies.weighting import StaticWeights


def make_system(assets):
    return DistillSystem(
        load_classifier(str(assets["student"]), 2), {"base": load_classifier(str(assets["teacher"]), 2)},
        AllInstances(), SingleTeacher(), LogitKD("kl", 2.0), StaticWeights(1.0, 1.0),
        metrics=["acc"], dev_splits=["dev"], num_labels=2,
    )


def batch():
    ids = torch.tensor([[2, 6, 7, 3], [2, 8, 3, 0]])
    mask = (ids != 0).long()
    inputs = {"input_ids": ids, "attention_mask": mask}
    return {"idx": torch.arange(2), "labels": torch.tensor([1, 0]), "inputs": {"student": inputs, "base": inputs}}


def test_teachers_stay_frozen_in_train_mode(assets):
    system = make_system(assets)
    system.train()  # DistillSystem.train itself, as on_fit_start calls it; tests/test_modes.py checks it through fit
    assert system.model.training
    assert not any(m.training for m in system.teachers.modules())
    assert not any(p.requires_grad for p in system.teachers.parameters())


def test_training_step_backpropagates_into_student_only(assets):
    system = make_system(assets)
    system.train()  # a step called by hand, without a Trainer, in the mode fit gives it (tests/test_modes.py)
    loss = system.training_step(batch(), 0)
    loss.backward()
    assert all(p.grad is None for p in system.teachers.parameters())
    assert system.model.classifier.weight.grad.abs().sum() > 0


def test_loss_is_ce_plus_kd(assets):
    system = make_system(assets)
    system.eval()  # no dropout, so the terms can be recomputed
    b = batch()
    with torch.no_grad():
        loss = system.training_step(b, 0)
        s = system.model(**b["inputs"]["student"]).logits
        t = system.teachers["base"](**b["inputs"]["base"]).logits
    expected = torch.nn.functional.cross_entropy(s, b["labels"]) + LogitKD("kl", 2.0)(s, t).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_checkpoint_holds_no_teacher_weights(assets):
    system = make_system(assets)
    checkpoint = {"state_dict": system.state_dict()}
    assert any(k.startswith("teachers.") for k in checkpoint["state_dict"])
    system.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("teachers.") for k in checkpoint["state_dict"])
    fresh = make_system(assets)
    fresh.load_state_dict(checkpoint["state_dict"], strict=False)
    assert torch.equal(fresh.model.classifier.weight, system.model.classifier.weight)


def test_teacher_dropout_reproduces_the_authors_train_mode_teachers(assets):
    system = DistillSystem(
        load_classifier(str(assets["student"]), 2), {"base": load_classifier(str(assets["teacher"]), 2)},
        AllInstances(), SingleTeacher(), LogitKD("kl"), StaticWeights(), teacher_dropout=True,
        metrics=["acc"], dev_splits=["dev"], num_labels=2,
    )
    system.train()  # the draw-to-draw difference needs a hand-held teacher; tests/test_modes.py checks the mode in fit
    assert all(m.training for m in system.teachers.modules())  # dropout on while the student trains
    assert not any(p.requires_grad for p in system.teachers.parameters())  # still frozen
    b = batch()["inputs"]["base"]
    torch.manual_seed(0)
    first = system.teachers["base"](**b).logits
    assert not torch.equal(first, system.teachers["base"](**b).logits)  # another dropout draw, another output
    system.eval()
    assert not any(m.training for m in system.teachers.modules())  # evaluation: dropout off


def test_static_kd_step_gives_the_loss_it_gave_before_data_selection(tmp_path):
    """sampler=none through today's step (scoring, selection, cache wrapper) gives, on a fixed batch with dropout on,
    the loss that commit 7450b60 (before any data selection) gave: 0.6923305988311768."""
    from tests.conftest import make_tiny_model

    torch.manual_seed(0)
    s, t = make_tiny_model(tmp_path / "s"), make_tiny_model(tmp_path / "t", layers=2)
    torch.manual_seed(1)
    system = DistillSystem(load_classifier(str(s), 2), {"base": load_classifier(str(t), 2)}, AllInstances(),
                           SingleTeacher(), LogitKD("kl", 2.0), StaticWeights(1.0, 1.0), metrics=["acc"],
                           dev_splits=["dev"], num_labels=2)
    system.train()  # the pinned value is the step's in fit's mode (dropout on), computed without a Trainer
    ids = torch.tensor([[2, 6, 7, 3, 0], [2, 8, 9, 10, 3], [2, 11, 3, 0, 0]])
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    b = {"idx": torch.arange(3), "labels": torch.tensor([1, 0, 1]), "inputs": {"student": inputs, "base": inputs}}
    system.log = system.log_dict = lambda *args, **kwargs: None  # no Trainer attached
    torch.manual_seed(2)
    assert system.training_step(b, 0).item() == 0.6923305988311768


class RowByRow:
    """An adoption written without any share of the batch: one route per KD row, weight 1."""

    stats: dict = {}

    def __call__(self, student_logits, rows, teachers):
        from dkd.strategies.adoption import Route

        return [Route((teachers[0],), rows[i:i + 1]) for i in range(rows.numel())]


def test_the_loss_scale_does_not_depend_on_how_routes_cut_the_rows(assets):
    """The per-row terms are reduced in one place (dkd.strategies.weighting.instance_mean, over the KD rows): a new
    route rule that splits the rows and forgets any share gives the loss of one route over all rows."""
    losses = []
    for adoption in (SingleTeacher(), RowByRow()):
        torch.manual_seed(0)
        system = make_system(assets)
        system.adoption = adoption
        system.eval()  # no dropout: the two steps see the same outputs
        system.log = system.log_dict = lambda *args, **kwargs: None
        with torch.no_grad():
            losses.append(system.training_step(batch(), 0))
    assert torch.allclose(losses[0], losses[1], atol=1e-6)


def test_instance_mean_is_pinned():
    from dkd.strategies.weighting import instance_mean

    weighted = [torch.tensor([0.5, 1.0]), torch.tensor([2.0])]
    assert instance_mean(weighted, 4).item() == pytest.approx(0.875)  # (0.5 + 1 + 2) / 4: a row without KD counts 0
    assert instance_mean([], 0).item() == 0.0
