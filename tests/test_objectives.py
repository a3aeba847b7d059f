"""Loss values pinned on a fixed batch (values computed by hand from the formulas), plus behaviour."""
import pytest
import torch

from dkd.strategies.adoption import Route, SingleTeacher
from dkd.strategies.objectives import LogitKD, kl_kd, mse_kd, task_loss
from dkd.strategies.samplers import AllInstances
from dkd.strategies.weighting import StaticWeights

STUDENT = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]])
TEACHER = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, -0.5]])


@pytest.mark.parametrize(
    "temperature, expected", [(1.0, [0.43226002, 0.65720515]), (2.0, [0.41851687, 0.72551564])]
)
def test_kl_kd_pinned(temperature, expected):
    assert torch.allclose(kl_kd(STUDENT, TEACHER, temperature), torch.tensor(expected), atol=1e-6)


def test_kl_kd_mean_equals_batchmean_kldiv():
    t = 2.0
    ref = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(STUDENT / t, -1), torch.softmax(TEACHER / t, -1)
    ) * t**2
    assert torch.allclose(kl_kd(STUDENT, TEACHER, t).mean(), ref)


def test_mse_kd_pinned_and_equals_mseloss():
    assert torch.allclose(mse_kd(STUDENT, TEACHER), torch.tensor([0.75, 1.5833333]))
    assert torch.allclose(mse_kd(STUDENT, TEACHER).mean(), torch.nn.MSELoss()(STUDENT.view(-1), TEACHER.view(-1)))


def test_kd_is_zero_when_student_matches_teacher():
    assert torch.allclose(kl_kd(TEACHER, TEACHER, 3.0), torch.zeros(2), atol=1e-7)
    assert torch.equal(mse_kd(TEACHER, TEACHER), torch.zeros(2))


def test_task_loss_pinned():
    assert task_loss(STUDENT, torch.tensor([1, 2])).item() == pytest.approx(0.43598737, abs=1e-6)
    regression = task_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 3.0]))
    assert regression.item() == pytest.approx(0.5)


def test_logit_kd_gradient_reaches_student_only():
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    LogitKD("kl", 1.0)(student, teacher.detach()).mean().backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_logit_kd_rejects_bad_options():
    with pytest.raises(ValueError, match="objective.loss='l1'"):
        LogitKD("l1")
    with pytest.raises(ValueError, match="temperature"):
        LogitKD("kl", 0.0)
    with pytest.raises(ValueError, match="objective.loss=mse"):
        LogitKD("kl").check(num_labels=1)


def test_static_weights_pinned():
    assert StaticWeights(0.5, 2.0)(torch.tensor(1.0), {"kd": torch.tensor(3.0)}).item() == pytest.approx(6.5)


def test_static_kd_strategies_select_all_for_one_teacher():
    selected = AllInstances().rows_to_distil(STUDENT, AllInstances().rows_to_train(None, 2, STUDENT.device))
    assert selected.tolist() == [0, 1]
    routes = SingleTeacher()(STUDENT, selected, ["base"])
    assert routes == [Route(("base",), selected)]
    with pytest.raises(ValueError, match="teacher=base or teacher=large"):
        SingleTeacher().check(["base", "large"])
