"""The student's uncertainty: one function for data selection, teacher adoption and objective weighting."""
from __future__ import annotations

import math

import torch


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    """u = H(p) / log C, H(p) = −Σ p log p; from log-softmax, so a probability that underflows to 0 adds 0, not NaN."""
    return (-(log_p.exp() * log_p).sum(-1) / math.log(log_p.size(-1))).clamp(0.0, 1.0)


def _margin(log_p: torch.Tensor) -> torch.Tensor:
    """u = 1 − (p₍₁₎ − p₍₂₎), one minus the gap between the two most likely classes."""
    top2 = log_p.exp().topk(2, dim=-1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def _least_confidence(log_p: torch.Tensor) -> torch.Tensor:
    """u = (1 − max p) · C / (C − 1)."""
    classes = log_p.size(-1)
    return (1.0 - log_p.exp().max(-1).values) * classes / (classes - 1)


MEASURES = {"entropy": _entropy, "margin": _margin, "least_confidence": _least_confidence}


def uncertainty(logits: torch.Tensor, measure: str = "entropy", grad: bool = False) -> torch.Tensor:
    """Per-row uncertainty in [0, 1] (1 = the student is unsure) of class logits ``(B, C)``, computed in float32
    whatever the logits' precision. ``measure``: entropy, margin or least_confidence. Without gradient unless
    ``grad`` (the authors' adoption and weighting let the loss's gradient flow into u)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown uncertainty measure {measure!r}; choose from {sorted(MEASURES)}")
    if logits.dim() != 2 or logits.size(-1) < 2:
        raise ValueError(f"uncertainty needs class logits (B, C >= 2), got shape {tuple(logits.shape)}")
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return MEASURES[measure](torch.log_softmax(logits.float(), dim=-1))
