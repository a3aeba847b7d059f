"""GLUE metrics pinned on fixed predictions (values computed by hand), and the task score."""
import pytest
import torch

from dkd.metrics import TaskMetrics
from dkd.tasks import custom_task

PREDS = [1, 1, 0, 1, 0, 0, 1, 0]
LABELS = [1, 0, 0, 1, 1, 0, 1, 0]  # tp 3, fp 1, fn 1, tn 3


def logits_for(preds, num_labels=2):
    return torch.nn.functional.one_hot(torch.tensor(preds), num_labels).float()


def test_classification_metrics_pinned():
    metrics = TaskMetrics(["acc", "f1", "mcc"], ["dev"], 2)
    metrics.update(0, logits_for(PREDS), torch.tensor(LABELS))
    values = metrics.compute()
    assert values["dev/acc"] == pytest.approx(0.75)
    assert values["dev/f1"] == pytest.approx(0.75)  # F1 of the positive class (1), as GLUE scores MRPC/QQP
    assert values["dev/mcc"] == pytest.approx(0.5)
    assert values["dev/score"] == pytest.approx((0.75 + 0.75 + 0.5) / 3)


def test_f1_scores_the_positive_class():
    metrics = TaskMetrics(["f1"], ["dev"], 2)
    metrics.update(0, logits_for([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]))
    assert metrics.compute()["dev/f1"] == 0.0  # no true positive: 0, not the negative class F1 (0.86)


def test_regression_metrics_pinned_in_half_precision():
    metrics = TaskMetrics(["pearson", "spearman"], ["dev"], 1)
    preds = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]], dtype=torch.bfloat16)
    metrics.update(0, preds, torch.tensor([1.5, 1.0, 3.5, 5.0, 4.0]))
    values = metrics.compute()
    assert values["dev/pearson"] == pytest.approx(0.83925433, abs=1e-5)
    assert values["dev/spearman"] == pytest.approx(0.8, abs=1e-6)


def test_mnli_score_averages_matched_and_mismatched():
    metrics = TaskMetrics(["acc"], ["dev_m", "dev_mm"], 3)
    metrics.update(0, logits_for([0, 1, 2, 2], 3), torch.tensor([0, 1, 2, 0]))  # 0.75
    metrics.update(1, logits_for([0, 1], 3), torch.tensor([0, 2]))  # 0.5
    values = metrics.compute()
    assert values == pytest.approx({"dev_m/acc": 0.75, "dev_mm/acc": 0.5, "dev/score": 0.625})
    metrics.reset()
    metrics.update(0, logits_for([0], 3), torch.tensor([0]))
    metrics.update(1, logits_for([0], 3), torch.tensor([1]))
    assert metrics.compute() == pytest.approx({"dev_m/acc": 1.0, "dev_mm/acc": 0.0, "dev/score": 0.5})  # reset


@pytest.mark.parametrize("labels, metrics, message", [
    (None, ["acc"], "task.labels=null makes task=custom a regression"),
    (["a", "b"], ["pearson"], "pearson/spearman need a regression"),
    (["a", "b", "c"], ["f1"], "f1, which scores binary tasks"),
    (["a", "b"], ["bleu"], r"unknown \['bleu'\]"),
])
def test_custom_task_metrics_must_fit_labels(labels, metrics, message):
    with pytest.raises(ValueError, match=message):
        custom_task(["text"], "label", labels, metrics, "train.csv", "dev.csv")
