"""Data selection (config group ``sampler``): which instances of a batch the teachers are queried on."""
from __future__ import annotations

import torch


class AllInstances:
    """``sampler=none``: static KD queries the teacher on every instance, ``S = {1, …, B}``."""

    def __call__(self, student_logits: torch.Tensor) -> torch.Tensor:
        return torch.arange(student_logits.size(0), device=student_logits.device)
