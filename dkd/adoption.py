"""Teacher adoption (config group ``adoption``): which teacher each selected instance learns from, and how much."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dkd.errors import UserError


@dataclass
class Route:
    """Teacher ``teacher`` sees batch rows ``index``; its KD term is ``mean(weight · L_kd)`` over those rows."""

    teacher: str
    index: torch.Tensor
    weight: torch.Tensor | float = 1.0


class SingleTeacher:
    """``adoption=single``: the one teacher sees every selected instance with weight 1 (static KD)."""

    def check(self, teachers: list[str]) -> None:
        if len(teachers) != 1:
            raise UserError(
                f"adoption=single takes one teacher but teacher= gives {teachers}; use teacher=base or teacher=large."
            )

    def __call__(self, student_logits: torch.Tensor, selected: torch.Tensor, teachers: list[str]) -> list[Route]:
        return [Route(teachers[0], selected)]
