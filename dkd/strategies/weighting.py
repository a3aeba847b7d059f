"""Objective weighting (config group ``weighting``): how the loss terms add up to one scalar.

The objective gives per-instance terms ℓ^KD_i (and ℓ^PT_i with ``objective=kd_pt``); a weighting gives each row i a
weight per term from the student's uncertainty u_i (:func:`dkd.strategies.uncertainty.uncertainty`, normalised entropy
by default), and the loss is

    L = α_ce · CE + α_kd · mean_i w_kd(u_i) ℓ^KD_i + α_pt · mean_i w_pt(u_i) ℓ^PT_i

- ``static``:          w_kd = w_pt = 1 (static KD, and PKD's fixed mix)
- ``uncertainty``:     w_kd = 1 − u, w_pt = u: an unsure student leans on the hidden states, a confident one on the
  teacher's output distribution (the paper's objective adaptation)
- ``uncertainty_r``:   w_kd = u, w_pt = 1 − u (the reverse, the paper's ablation)
- ``uncertainty_kd``:  w_kd = u, w_pt = 1 (the authors' README plug-in ``dynamic_kd_loss``: L = CE + mean_i u_i ℓ^KD_i)

The weights carry no gradient unless ``detach=false`` (``faithful=true``: the authors' objective code, where the
gradient of the loss flows into u through the weights; for ``uncertainty_kd`` it keeps u detached, as their README
plug-in does).
"""
from __future__ import annotations

import torch

from dkd.errors import UserError
from dkd.strategies.uncertainty import MEASURES, uncertainty


def instance_mean(weighted: list[torch.Tensor], rows: int) -> torch.Tensor:
    """One loss term from its weighted per-row losses: ``(1/n) Σ w_i · ℓ_i`` over every route's rows, n = ``rows``
    the KD rows of the step. The only place where per-row terms become a scalar, so that no strategy carries a share
    of the batch in its weights (a route over half the rows weighs them as a route over all rows does)."""
    if not weighted or rows == 0:
        return torch.zeros((), dtype=torch.float32)
    return torch.cat([w.float().reshape(-1) for w in weighted]).sum() / rows


class StaticWeights:
    """``weighting=static``: ``L = α_ce · CE + α_kd · L_KD (+ α_pt · L_PT)`` with fixed α (the static KD baseline)."""

    per_instance = False

    def __init__(self, alpha_ce: float = 1.0, alpha_kd: float = 1.0, alpha_pt: float = 1.0, faithful: bool = False):
        # faithful: accepted so that preset=authors can set it for every weighting; fixed weights have no gradient
        self.alpha = {"ce": alpha_ce, "kd": alpha_kd, "pt": alpha_pt}
        self.stats: dict = {}

    def check(self, objective, num_labels: int) -> None:
        pass

    def instance_weights(self, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per row of the trained rows and per term, its weight (all 1 here)."""
        ones = student_logits.new_ones(student_logits.size(0), dtype=torch.float32)
        return {"kd": ones, "pt": ones}

    def __call__(self, ce: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``terms``: the weighted per-instance means of each objective term (``kd``, ``pt``)."""
        return self.alpha["ce"] * ce + sum(self.alpha[name] * value for name, value in terms.items())


class UncertaintyWeights(StaticWeights):
    """``weighting=uncertainty|uncertainty_r|uncertainty_kd``: per-row weights (w_kd, w_pt) from u (module docstring
    for each). ``measure``: entropy (the paper), margin or least_confidence."""

    per_instance = True
    RULES = {
        "uncertainty": (lambda u: 1 - u, lambda u: u),
        "uncertainty_r": (lambda u: u, lambda u: 1 - u),
        "uncertainty_kd": (lambda u: u, lambda u: torch.ones_like(u)),
    }

    def __init__(self, rule: str = "uncertainty", measure: str = "entropy", detach: bool = True,
                 faithful: bool = False, **alphas):
        super().__init__(**alphas, faithful=faithful)
        if rule not in self.RULES:
            raise UserError(f"weighting.rule={rule!r}: choose one of {sorted(self.RULES)}.")
        if measure not in MEASURES:
            raise UserError(f"weighting.measure={measure!r}: choose one of {sorted(MEASURES)}.")
        # the README plug-in computes u under no_grad; the authors' objective code lets the gradient flow into u
        self.rule, self.measure = rule, measure
        self.detach = detach and not (faithful and rule != "uncertainty_kd")

    def check(self, objective, num_labels: int) -> None:
        if num_labels < 2:
            raise UserError(f"weighting={self.rule} weighs by the student's uncertainty over classes, but this task "
                            f"is a regression: use weighting=static.")
        if self.rule != "uncertainty_kd" and not objective.needs_hidden_states:
            raise UserError(f"weighting={self.rule} weighs logit KD against hidden-state alignment, which "
                            f"objective=kd does not have: use objective=kd_pt, or weighting=uncertainty_kd for "
                            f"logit KD weighted by u alone (the authors' README plug-in).")

    def instance_weights(self, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        u = uncertainty(student_logits, self.measure, grad=not self.detach)
        kd, pt = (rule(u) for rule in self.RULES[self.rule])
        self.stats = {"u": u.detach().mean(), "kd": kd.detach().mean(), "pt": pt.detach().mean()}
        return {"kd": kd, "pt": pt}
