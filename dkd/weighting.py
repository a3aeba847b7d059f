"""Objective weighting (config group ``weighting``): how the loss terms add up to one scalar."""
from __future__ import annotations

import torch


class StaticWeights:
    """``weighting=static``: ``L = α_ce · L_ce + α_kd · L_kd`` with fixed α (the paper's static KD baseline)."""

    def __init__(self, alpha_ce: float = 1.0, alpha_kd: float = 1.0):
        self.alpha_ce = alpha_ce
        self.alpha_kd = alpha_kd

    def __call__(self, ce: torch.Tensor, kd: torch.Tensor) -> torch.Tensor:
        return self.alpha_ce * ce + self.alpha_kd * kd
