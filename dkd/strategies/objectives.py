"""Distillation objectives (config group ``objective``) and the per-instance losses they are built from.

An objective turns the student's outputs on some rows and the teachers' outputs on the same rows into named
per-instance loss terms (``kd``, and ``pt`` for hidden-state alignment); the weighting (``weighting=``) adds them up.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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


def task_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for classification, MSE for regression (one output); ``reduction`` as torch's losses."""
    if logits.size(-1) == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float(), reduction=reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)


class LogitKD(nn.Module):
    """``objective=kd``: match the teacher's logits, ``ℓ^KD_i = kl_kd`` or ``mse_kd`` per instance i."""

    needs_hidden_states = False
    TERMS = ("kd",)

    def __init__(self, loss: str = "kl", temperature: float = 1.0, faithful: bool = False):
        # faithful: logit KD has one form in the authors' code (their MSE is objective.loss=mse); accepted so that
        # preset=authors can set it for every objective
        super().__init__()
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

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return KD_LOSSES[self.loss](student_logits, teacher_logits, self.temperature)

    def terms(self, student: dict, teachers: dict[str, dict]) -> dict[str, torch.Tensor]:
        """Per-instance loss terms of the student's outputs (``logits``, …) against one or more teachers' outputs on the
        same rows (several are fused into one target, :meth:`fuse`)."""
        logits = [t["logits"] for t in teachers.values()]
        return {"kd": self(student["logits"], logits[0] if len(logits) == 1 else self.fuse(logits))}

    def fuse(self, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        """One target from several teachers' logits on the same rows (``adoption=ensemble``, ``combine=probs``): for
        ``kl`` the logits T·log(mean_t softmax(z_t / T)), whose softened probabilities are the teachers' average; for
        ``mse`` the mean logits."""
        stacked = torch.stack([z.float() for z in teacher_logits])
        if self.loss == "mse":
            return stacked.mean(0)
        t = self.temperature
        return t * (torch.logsumexp(torch.log_softmax(stacked / t, dim=-1), dim=0) - math.log(len(teacher_logits)))


# ------------------------------------------------------------------------------------- hidden-state alignment
def uniform_layer_map(student_layers: int, teacher_layers: int, first: int = 0) -> list[tuple[int, int]]:
    """PKD's uniform map: student hidden state l ↔ teacher ⌊l · L_t / L_s⌋, l = ``first`` … L_s, 0 being the
    embeddings (for a 12-layer teacher and a 6-layer student: 0↔0, 1↔2, …, 6↔12; the authors' l · (L_t // L_s) when
    L_s divides L_t)."""
    return [(layer, layer * teacher_layers // student_layers) for layer in range(first, student_layers + 1)]


def hidden_alignment(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None,
                     normalize: str = "hidden") -> torch.Tensor:
    """ℓ^PT per instance, shape ``(n,)``: Σ over aligned layer pairs of the mean over positions and dimensions of
    (ĥ_s − ĥ_t)², ĥ = h / ‖h‖₂ along the hidden dimension (``normalize="hidden"``) or along the positions
    (``"positions"``: the authors' static PKD term).

    ``student``, ``teacher``: ``(n, pairs, positions, hidden)``; ``mask``: ``(n, positions)``, 1 on real tokens (padding
    is left out of the mean, and of the normalisation along positions), or None to average over every position."""
    dim = -1 if normalize == "hidden" else -2
    student, teacher = student.float(), teacher.float()
    if mask is not None:
        keep = mask.to(student.dtype)[:, None, :, None]  # (n, 1, positions, 1)
        student, teacher = student * keep, teacher * keep
    sq = (F.normalize(student, dim=dim) - F.normalize(teacher, dim=dim)).pow(2).mean(-1)  # (n, pairs, positions)
    if mask is None:
        return sq.mean(-1).sum(-1)
    weights = mask.to(sq.dtype)[:, None, :]
    return ((sq * weights).sum(-1) / weights.sum(-1).clamp(min=1)).sum(-1)


class LogitAndHiddenKD(LogitKD):
    """``objective=kd_pt``: ℓ^KD_i as ``objective=kd`` plus PKD-style hidden-state alignment ℓ^PT_i
    (:func:`hidden_alignment`) against each teacher; against several teachers on the same rows (an ensemble) ℓ^PT is
    their mean.

    Args:
        layers: ``uniform`` (:func:`uniform_layer_map` for each teacher, from the embeddings for ``all`` tokens, from
            layer 1 for ``cls``: the embedding layer's first-token state is the same for every input), a list of
            ``[student, teacher]`` hidden-state pairs (0 = embeddings) for every teacher, or a dict teacher → such a
            list.
        positions: ``cls`` (the first token, as the original BERT-PKD: works across tokenizers, and its states are
            small enough for the teacher-output cache) or ``all`` (every token, the authors' code; needs the teacher
            to read the student's tokens).
        mask: leave padding out of ``all`` (the authors' code does not).
        normalize: ``hidden`` (ĥ along the hidden dimension) or ``positions`` (along the tokens: the authors' static
            term; ``all`` tokens only, as one position normalises to ±1).
        faithful: the authors' code: ``all`` tokens, no mask, normalised along the positions with static weights and
            along the hidden dimension with uncertainty weights (their two code paths differ there).

    A teacher with another hidden size than the student gets a learned projection W_t (H_s → H_t, one per teacher,
    shared by its layers as TinyBERT's W_h) applied to the student's states before normalising; it trains with the
    student and is kept in checkpoints but not in the exported classifier.
    """

    needs_hidden_states = True
    TERMS = ("kd", "pt")
    POSITIONS = ("cls", "all")
    NORMALIZE = ("hidden", "positions")

    def __init__(self, loss: str = "kl", temperature: float = 1.0, layers="uniform", positions: str = "cls",
                 mask: bool = True, normalize: str = "hidden", faithful: bool = False):
        super().__init__(loss, temperature, faithful)
        if positions not in self.POSITIONS:
            raise UserError(f"objective.positions={positions!r}: choose one of {list(self.POSITIONS)}.")
        if normalize not in self.NORMALIZE:
            raise UserError(f"objective.normalize={normalize!r}: choose one of {list(self.NORMALIZE)}.")
        if faithful:
            positions, mask = "all", False
        if normalize == "positions" and positions != "all":
            raise UserError("objective.normalize=positions normalises each state across the tokens, so with "
                            "objective.positions=cls (one token) every value becomes ±1 and nothing is learned: use "
                            "objective.positions=all, or objective.normalize=hidden.")
        self.layers = layers if isinstance(layers, str) else _plain(layers)
        if isinstance(self.layers, str) and self.layers != "uniform":
            raise UserError(f"objective.layers={layers!r}: 'uniform', a list of [student, teacher] pairs, or a dict "
                            f"teacher → such a list.")
        self.faithful, self.positions, self.mask, self.normalize = faithful, positions, mask, normalize
        self.maps: dict[str, list[tuple[int, int]]] = {}
        self.projections = nn.ModuleDict()

    def check_weighting(self, weighting) -> None:
        """``faithful``: the authors normalise along the positions in their static path only."""
        if self.faithful:
            self.normalize = "hidden" if weighting.per_instance else "positions"

    def plan(self, student_layers: int, teacher_layers: dict[str, int], same_tokens: dict[str, bool]) -> dict:
        """The layer map per teacher (kept for :meth:`setup`), checked against the depths before any model is loaded
        (preflight); ``same_tokens``: which teachers read the student's tokenization (``positions=all`` needs it)."""
        for role, same in same_tokens.items():
            if self.positions == "all" and not same:
                raise UserError(f"objective.positions=all aligns token by token, but the {role} teacher reads another "
                                f"tokenization than the student (token positions do not correspond): use "
                                f"objective.positions=cls, or a teacher with the student's tokenizer.")
        maps = {}
        for role, depth in teacher_layers.items():
            pairs = (uniform_layer_map(student_layers, depth, first=int(self.positions == "cls"))
                     if self.layers == "uniform" else
                     self.layers.get(role) if isinstance(self.layers, dict) else self.layers)
            if pairs is None:
                raise UserError(f"objective.layers gives pairs for {sorted(self.layers)} but not for the {role} "
                                f"teacher: add objective.layers.{role}=[[0,0],...].")
            if not all(isinstance(p, (list, tuple)) and all(isinstance(i, int) for i in p) for p in pairs):
                raise UserError(f"objective.layers={pairs}: give [student, teacher] pairs of layer numbers, "
                                f"e.g. objective.layers=[[1,2],[3,6]].")
            pairs = [tuple(p) for p in pairs]
            bad = [p for p in pairs if len(p) != 2 or not 0 <= p[0] <= student_layers or not 0 <= p[1] <= depth]
            if not pairs or bad:
                raise UserError(f"objective.layers for the {role} teacher: pairs [student, teacher] of hidden states "
                                f"0..{student_layers} (student) and 0..{depth} ({role}), 0 = embeddings; got "
                                f"{bad or 'none'}.")
            maps[role] = pairs
        self.maps = maps
        return maps

    def setup(self, student_config, teacher_configs: dict) -> None:
        """The projections of teachers with another hidden size, after :meth:`plan` (call after seeding: W_t is
        random)."""
        for role, c in teacher_configs.items():
            if role not in self.maps or max(t for _, t in self.maps[role]) > c.num_hidden_layers:
                raise RuntimeError(f"LogitAndHiddenKD.setup: no layer map planned for the {role} teacher's "
                                   f"{c.num_hidden_layers} layers; call plan() first (dkd.preflight does).")
        self.projections = nn.ModuleDict({
            role: nn.Linear(student_config.hidden_size, c.hidden_size)
            for role, c in teacher_configs.items() if c.hidden_size != student_config.hidden_size})

    def teacher_request(self, role: str) -> tuple[list[int], str]:
        """(teacher hidden states to return, positions) for :class:`dkd.cache.TeacherOutputs`."""
        return [t for _, t in self.maps[role]], self.positions

    def alignment(self, student: dict, teacher: dict, role: str) -> torch.Tensor:
        # the same tokens, padded to the student's rows' or the teacher's rows' longest: compare the common width
        width = min(teacher["hidden"].size(2), student["hidden_states"][0].size(1))
        states = student["hidden_states"]
        picked = torch.stack([states[s][:, :width] for s, _ in self.maps[role]], 1)  # (n, pairs, width, H_s)
        if role in self.projections:
            picked = self.projections[role](picked)
        mask = None
        if self.positions == "all" and self.mask:
            mask = teacher["attention_mask"][:, :width] * student["attention_mask"][:, :width]
        return hidden_alignment(picked, teacher["hidden"][:, :, :width], mask, self.normalize)

    def tie_parameters(self) -> torch.Tensor:
        """0 · Σ(projection weights): added to the loss so that every projection takes part in every step (DDP
        requires it) even when the adoption sent its teacher no row."""
        return 0.0 * sum((p.sum() for p in self.projections.parameters()), torch.zeros(()))

    def terms(self, student: dict, teachers: dict[str, dict]) -> dict[str, torch.Tensor]:
        out = super().terms(student, teachers)
        out["pt"] = torch.stack([self.alignment(student, t, role) for role, t in teachers.items()]).mean(0)
        return out


def _plain(value):
    """A config list/dict as plain Python (OmegaConf containers are not lists or dicts)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
