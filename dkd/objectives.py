"""Distillation objectives (config group ``objective``) and the per-instance losses they are built from."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dkd.errors import UserError


def kl_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-instance ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`` (Hinton et al., 2015), shape ``(B,)``.

    Its batch mean equals ``T² · KLDivLoss(reduction="batchmean")``.
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return temperature**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def mse_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-instance mean squared logit difference ``mean_c (z_s - z_t)²``, shape ``(B,)``.

    Its batch mean equals ``MSELoss()`` over all logits, the loss of the authors' released scripts;
    also the only choice for regression (one output). ``temperature`` is ignored (accepted for a uniform call).
    """
    return (student_logits - teacher_logits).pow(2).mean(-1)


KD_LOSSES = {"kl": kl_kd, "mse": mse_kd}


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification, MSE for regression (one output)."""
    if logits.size(-1) == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


class LogitKD:
    """``objective=kd``: match the teacher's logits, ``L_kd(i) = kl_kd`` or ``mse_kd`` per instance i."""

    needs_hidden_states = False

    def __init__(self, loss: str = "kl", temperature: float = 1.0):
        if loss not in KD_LOSSES:
            raise UserError(f"objective.loss={loss!r}: choose one of {sorted(KD_LOSSES)}.")
        if temperature <= 0:
            raise UserError(f"objective.temperature={temperature}: must be > 0.")
        self.loss = loss
        self.temperature = temperature

    def check(self, num_labels: int) -> None:
        if self.loss == "kl" and num_labels == 1:
            raise UserError("objective.loss=kl needs class logits but this task is a regression: "
                             "use objective.loss=mse.")

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return KD_LOSSES[self.loss](student_logits, teacher_logits, self.temperature)

    def fuse(self, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        """One target from several teachers' logits on the same rows (``adoption=ensemble``, ``combine=probs``): for
        ``kl`` the logits T·log(mean_t softmax(z_t / T)), whose softened probabilities are the teachers' average; for
        ``mse`` the mean logits."""
        stacked = torch.stack([z.float() for z in teacher_logits])
        if self.loss == "mse":
            return stacked.mean(0)
        t = self.temperature
        return t * (torch.logsumexp(torch.log_softmax(stacked / t, dim=-1), dim=0) - math.log(len(teacher_logits)))
