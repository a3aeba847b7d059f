"""GLUE dev metrics per split, and the task score (mean of all metrics over all dev splits, as GLUE averages them)."""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryF1Score, MatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from dkd.errors import UserError


def _metric(name: str, num_labels: int) -> Metric:
    factories = {
        "acc": lambda: MulticlassAccuracy(num_classes=num_labels, average="micro"),
        "f1": lambda: BinaryF1Score(),
        "mcc": lambda: MatthewsCorrCoef(task="multiclass", num_classes=num_labels),
        "pearson": PearsonCorrCoef,
        "spearman": SpearmanCorrCoef,
    }
    if name not in factories:
        raise UserError(f"Unknown metric '{name}': choose from {sorted(factories)} (task.metrics).")
    return factories[name]()


class ClassCounts(Metric):
    """How often each class is predicted (summed over DDP ranks): a student that predicts one class for every row has
    collapsed, whatever its accuracy says."""

    def __init__(self, num_labels: int):
        super().__init__()
        self.add_state("counts", default=torch.zeros(num_labels, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor) -> None:
        self.counts += torch.bincount(preds.long().flatten(), minlength=self.counts.numel())

    def compute(self) -> torch.Tensor:
        return self.counts


class TaskMetrics(nn.Module):
    """One :class:`MetricCollection` per split; ``compute`` gives ``{"dev/acc": …, "dev/score": …}``.

    ``score``: the key of the mean of all metrics (``test/score`` when the one split scored is the test split).
    For classification, :meth:`predicted_classes` says how many classes the model predicted on each split.
    """

    def __init__(self, names: list[str], splits: list[str], num_labels: int, score: str = "dev/score"):
        super().__init__()
        self.splits, self.score = list(splits), score
        self.by_split = nn.ModuleDict(
            {s: MetricCollection({n: _metric(n, max(num_labels, 2)) for n in names}) for s in self.splits}
        )
        self.classes = nn.ModuleDict({s: ClassCounts(num_labels) for s in self.splits}) if num_labels > 1 else None

    def update(self, split_idx: int, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.float()  # bf16/fp16 outputs would coarsen Pearson/Spearman
        preds = logits.squeeze(-1) if logits.size(-1) == 1 else logits.argmax(-1)
        self.by_split[self.splits[split_idx]].update(preds, labels)
        if self.classes is not None:
            self.classes[self.splits[split_idx]].update(preds)

    def predicted_classes(self) -> dict[str, int] | None:
        """Per split, the number of classes predicted at least once (None for a regression)."""
        if self.classes is None:
            return None
        return {split: int((counts.compute() > 0).sum()) for split, counts in self.classes.items()}

    def compute(self) -> dict[str, float]:
        values = {}
        for split, collection in self.by_split.items():
            for name, value in collection.compute().items():
                values[f"{split}/{name}"] = float(value)
        values[self.score] = sum(values.values()) / len(values)
        return values

    def reset(self) -> None:
        for collection in self.by_split.values():
            collection.reset()
        for counts in (self.classes or {}).values():
            counts.reset()


def describe(values: dict) -> str:
    """Metrics as one line, ``dev/acc 0.8394, dev/score 0.8394``, for logs and cards."""
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items()) or "not recorded"
