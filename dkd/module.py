"""Lightning systems: fine-tune one model (stage=teacher) or distil teachers into a student (stage=distill).

The models are plain ``nn.Module``s handed in; the strategies are small callables chosen by config groups.
The distillation step follows the paper's Figure 1: score → select → route → query teachers → losses → weight.
"""
from __future__ import annotations

import math
import warnings

import torch
from pytorch_lightning import LightningModule
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.utilities import GradClipAlgorithmType, rank_zero_warn
from torch import nn
from transformers import get_linear_schedule_with_warmup

from dkd.cache import TeacherOutputs
from dkd.callbacks import own_rank, per_rank
from dkd.data import select_rows
from dkd.global_batch import SCOPES, GlobalBatch
from dkd.loggers import CLASS_SHARES
from dkd.metrics import TaskMetrics
from dkd.models import count_parameters, freeze, restore_output_capture
from dkd.strategies.objectives import task_loss
from dkd.strategies.weighting import instance_mean

# how torch.optim.AdamW runs its update (``finetune.adamw``, ``distill.adamw``): the same arithmetic, other kernels.
# auto: torch's choice (a Python loop over the parameters on a CPU, one foreach kernel per group on a GPU); fused: one
# kernel for all the parameters (on a CPU 9 ms a step for the 17.4M-parameter student instead of 70, docs/benchmarks.md)
ADAMW = {"auto": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


class ClassifierSystem(LightningModule):
    """Shared by both stages: evaluates ``self.model`` on the dev split(s) and optimises it with AdamW + warmup.

    Args:
        model: the trained classifier (teacher being fine-tuned, or the student).
        role: which tokenization of the batch the model reads (``batch["inputs"][role]``).
        metrics: GLUE metric names; dev_splits: dev split names (two for MNLI).
        adamw: AdamW's implementation, a key of :data:`ADAMW`.
    """

    def __init__(self, model: nn.Module, role: str, metrics: list[str], dev_splits: list[str], num_labels: int,
                 lr: float = 2e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.1,
                 warmup_rounding: str = "floor", adamw: str = "fused"):
        super().__init__()
        self.model = model
        self.role = role
        self.metrics = TaskMetrics(metrics, dev_splits, num_labels)
        self.predicted_classes: dict[str, int] | None = None  # of the last evaluation (dkd.run records them)
        self.save_hyperparameters(ignore=["model", "teachers", "teacher_outputs", "sampler", "adoption", "objective",
                                          "weighting"])

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(**batch["inputs"][self.role]).logits

    def on_fit_start(self) -> None:
        """Train mode (dropout on) for what trains: HF loads models in eval mode and Lightning 2.6 no longer calls
        ``.train()`` when ``fit`` starts (it keeps the modes it finds, and restores them after each evaluation)."""
        self.train()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.metrics.update(dataloader_idx, self(batch), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.metrics.compute(), prog_bar=True)
        self.predicted_classes = self.metrics.predicted_classes()  # per split; None for a regression
        self.metrics.reset()

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """``trainer.gradient_clip_val`` with a fused AdamW under mixed precision. Lightning refuses to clip for an
        optimizer that unscales its own gradients, as it would clip scaled ones; but bf16 scales nothing, and under
        fp16 the scaler unscales them here first, so the clip sees the true gradients (and the fused step, told they
        are unscaled, does not unscale them again)."""
        plugin = self.trainer.precision_plugin
        if not (gradient_clip_val and isinstance(plugin, MixedPrecision)
                and getattr(optimizer, "_step_supports_amp_scaling", False)):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if plugin.scaler is not None:
            plugin.scaler.unscale_(optimizer)
        Precision.clip_gradients(plugin, optimizer, gradient_clip_val,
                                 GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM))

    def configure_optimizers(self):
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        # the model and what the strategies train with it (objective=kd_pt's projections); frozen teachers have none
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if not n.endswith(no_decay)], "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in params if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, **ADAMW[self.hparams.adamw])
        total = self.trainer.estimated_stepping_batches
        # warm-up steps ⌊r·T⌋ (DKD), or ⌈r·T⌉ as HF Trainer counts them (warmup_rounding=ceil, preset=authors)
        rounding = math.ceil if self.hparams.warmup_rounding == "ceil" else int
        scheduler = get_linear_schedule_with_warmup(optimizer, rounding(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class FineTuneSystem(ClassifierSystem):
    """``stage=teacher``: ordinary fine-tuning, ``L = CE(z, y)`` (MSE for regression)."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = task_loss(self(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True)
        return loss


class DistillSystem(ClassifierSystem):
    """``stage=distill``: the student learns from frozen teachers through four pluggable strategies.

    Args:
        teachers: name → fine-tuned teacher; each reads ``batch["inputs"][name]``. Frozen (no gradient, left out of
            checkpoints), eval mode unless ``teacher_dropout``.
        teacher_outputs: name → :class:`dkd.cache.TeacherOutputs` that answers for that teacher, from its cache where
            it has the rows (``distill.teacher_cache``); by default every query runs the teacher.
        sampler: which rows the student trains on and which of them the teachers are queried on (``sampler=``).
        adoption: student logits (with their gradient: the adoption detaches unless told not to), KD rows, teacher
            names from the smallest to the largest → :class:`dkd.strategies.adoption.Route` list (``adoption=``).
        objective: per-instance loss terms (``kd``, ``pt``) between student and teacher outputs (``objective=``); an
            ``nn.Module``, so that what it learns (projections between hidden sizes) trains and is checkpointed with
            the student.
        weighting: per-row weights of each term from the student's uncertainty, and the terms → one scalar
            (``weighting=``).
        scope: ``global`` (``distill.scope``): under DDP the strategies decide over the global batch, every rank's
            rows, as one process would; ``device``: each rank over its own rows (the authors' code on several GPUs).
    """

    def __init__(self, model: nn.Module, teachers: dict[str, nn.Module], sampler, adoption, objective, weighting,
                 teacher_dropout: bool = False, teacher_outputs: dict[str, TeacherOutputs] | None = None,
                 keep_width: bool = False, scope: str = "global", **kwargs):
        super().__init__(model, "student", **kwargs)
        self.teachers = nn.ModuleDict({name: freeze(t) for name, t in teachers.items()})
        self.teacher_outputs = teacher_outputs or {name: TeacherOutputs(t, name) for name, t in self.teachers.items()}
        # smallest first, as the adoptions expect; equal sizes keep the configured order
        self.teacher_order = sorted(self.teachers, key=lambda name: count_parameters(self.teachers[name]))
        self.decisions: dict[str, tuple] = {}  # what the strategies decided: running (sum, steps) per statistic
        self.teacher_dropout = teacher_dropout
        self.trim = not keep_width  # data.padding=max_length: selected rows keep the batch's width, as theirs do
        self.sampler, self.adoption, self.objective, self.weighting = sampler, adoption, objective, weighting
        self.strict_loading = False  # checkpoints hold no teacher weights
        if scope not in SCOPES:
            raise ValueError(f"scope={scope!r}: one of {SCOPES}")
        self.scope = scope  # global: the strategies decide over every rank's rows (dkd.global_batch)
        self.step_record: dict = {}

    def setup(self, stage: str) -> None:
        restore_output_capture(self)  # under ddp_spawn the models arrive pickled in each worker

    def train(self, mode: bool = True):
        """The student trains with dropout; the teachers keep it off, unless ``distill.teacher_dropout`` reproduces
        the authors' code (HF Trainer puts the teachers in train mode too)."""
        super().train(mode)
        self.teachers.train(mode and self.teacher_dropout)
        return self

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if GlobalBatch.of(self, self.scope).sharded and getattr(self.adoption, "batch_weights", False) \
                and not getattr(self.adoption, "detach", True):
            rank_zero_warn("adoption=soft with weights that carry gradient (adoption.detach=false or faithful=true) "
                           "under DDP: the ranks agree on ū, but its gradient reaches each rank's own rows only, not "
                           "one process's gradient (dkd/global_batch.py); use adoption.detach=true or one process")
        # Lightning warns about every module in eval mode when training starts: the frozen teachers are, on purpose.
        # Silenced for exactly their count, so that any other module left in eval mode is still reported.
        frozen = sum(not m.training for m in self.teachers.modules())
        if frozen:
            warnings.filterwarnings("ignore", message=rf"Found {frozen} module\(s\) in eval mode at the start")
            self._eval_mode_filter = warnings.filters[0]

    def on_fit_end(self) -> None:
        """The filter of :meth:`on_fit_start` goes with this fit (a later run in the process counts its own)."""
        if getattr(self, "_eval_mode_filter", None) in warnings.filters:
            warnings.filters.remove(self._eval_mode_filter)
            warnings._filters_mutated()  # noqa: SLF001 - the warnings module's own cache of the filter list

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teachers.")]:
            del state[key]
        checkpoint["teacher_outputs"] = per_rank({name: o.state_dict() for name, o in self.teacher_outputs.items()})
        checkpoint["decisions"] = per_rank({k: (float(total), steps) for k, (total, steps) in self.decisions.items()})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for name, state in own_rank(checkpoint.get("teacher_outputs", {"ranks": [{}]})).items():
            self.teacher_outputs[name].load_state_dict(state)
        self.decisions = dict(own_rank(checkpoint.get("decisions", {"ranks": [{}]})))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        for outputs in self.teacher_outputs.values():
            outputs.start_batch()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        for teacher_outputs in self.teacher_outputs.values():
            teacher_outputs.commit()

    def on_train_epoch_end(self) -> None:
        """Run averages of the strategies' decisions (``mean/*``, over steps and ranks), and the cache's hits and
        misses so far (rows, summed over ranks)."""
        self.log_dict({f"mean/{k}": float(total / steps) for k, (total, steps) in self.decisions.items()},
                      sync_dist=True)
        for name, outputs in self.teacher_outputs.items():
            if outputs.store is not None:
                outputs.store.flush()
            self.log_dict({f"cache/{name}_hits": float(outputs.hits), f"cache/{name}_misses": float(outputs.misses)},
                          reduce_fx="sum", sync_dist=True)

    @torch.no_grad()
    def score(self, batch: dict) -> torch.Tensor:
        """The scoring pass of ``sampler.mode=efficient``: the student's logits on every row, without gradient, with
        dropout off unless ``sampler.score_dropout``. A pool of p batches is scored in p chunks of rows of similar
        length, each cut to its longest row: padded to the pool's longest, the pass would cost more than p batches."""
        training = self.model.training
        self.model.train(self.sampler.score_dropout)
        try:
            if self.sampler.pool == 1:
                return self(batch)
            lengths = batch["inputs"][self.role]["attention_mask"].sum(-1)
            chunks = lengths.argsort(stable=True).chunk(self.sampler.pool)
            logits = [self(select_rows(batch, rows.sort().values, self.trim)) for rows in chunks]
            out = logits[0].new_empty((lengths.numel(), logits[0].size(-1)))
            for rows, part in zip(chunks, logits):
                out[rows.sort().values] = part
            return out
        finally:
            self.model.train(training)

    def student_outputs(self, part: dict) -> dict:
        """The student's logits on the trained rows, with its hidden states when the objective aligns them."""
        inputs = part["inputs"][self.role]
        if not self.objective.needs_hidden_states:
            return {"logits": self.model(**inputs).logits}
        out = self.model(**inputs, output_hidden_states=True)
        return {"logits": out.logits, "hidden_states": out.hidden_states, "attention_mask": inputs["attention_mask"]}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        everyone = GlobalBatch.of(self, self.scope)  # the strategies decide over every rank's rows
        size = everyone.size(batch["labels"].size(0))
        trained = self.sampler.rows_to_train(lambda: everyone.whole(self.score(batch)), size, batch["labels"].device)
        mine = everyone.part(everyone.agree(trained))
        part = select_rows(batch, mine.local_rows, self.trim)
        student = self.student_outputs(part)
        logits = student["logits"]
        decided_on = mine.gather(logits)  # every trained row's logits; this rank's keep their gradient
        kd_rows = everyone.agree(self.sampler.rows_to_distil(decided_on.detach(), mine.rows))
        routes = self.adoption(decided_on, kd_rows, self.teacher_order)
        weights = self.weighting.instance_weights(decided_on)
        weighted: dict[str, list[torch.Tensor]] = {name: [] for name in self.objective.TERMS}
        for route in routes:
            own, index = mine.take(route.index)
            if index.numel() == 0:
                continue
            weight = route.weight[own] if torch.is_tensor(route.weight) and route.weight.dim() else route.weight
            rows = select_rows(part, index, self.trim)
            targets = {t: self.teacher_outputs[t](rows) for t in route.teachers}
            for name, per_instance in self.objective.terms(rows_of(student, index), targets).items():
                weighted[name].append(weight * weights[name][route.index[own]] * per_instance)
                self.log(f"train/{name}_{'+'.join(route.teachers)}", per_instance.mean())
        terms = {name: mine.share(instance_mean(parts, kd_rows.numel())).to(logits.device)
                 for name, parts in weighted.items()}
        ce = mine.mean(lambda reduction: task_loss(logits, part["labels"], reduction))
        loss = self.weighting(ce, terms)
        if self.objective.needs_hidden_states:
            loss = loss + self.objective.tie_parameters().to(loss.device)
        # each rank holds its share of the one-process loss: their mean over ranks is that loss
        self.log_dict({"train/loss": loss, "train/ce": ce, **{f"train/{k}": v for k, v in terms.items()}},
                      prog_bar=True, sync_dist=everyone.sharded)
        decided = {f"{group}_{k}": v for group in ("sampler", "adoption", "weighting")
                   for k, v in getattr(self, group).stats.items()}
        if self.hparams.num_labels > 1 and kd_rows.numel():  # which gold classes the teachers were asked about
            decided.update(class_shares(mine.gather(part["labels"])[kd_rows], self.hparams.num_labels))
        self.log_dict({f"train/{k}": v for k, v in decided.items()})
        for key, value in decided.items():  # tensors stay on the device: no host sync per step
            total, steps = self.decisions.get(key, (0.0, 0))
            self.decisions[key] = (total + (value.detach() if torch.is_tensor(value) else value), steps + 1)
        # what the strategies decided over the global batch, for callbacks (tests/conftest.py: RecordDecisions)
        self.step_record = {"rows": mine.rows, "kd_rows": kd_rows, "routes": routes, "weights": weights}
        return loss


def class_shares(labels: torch.Tensor, num_labels: int) -> dict[str, torch.Tensor]:
    """``sampler_class_<c>``: the share of a step's KD rows whose gold label is c, n_c / n (n: the KD rows, > 0);
    their run means are means over the steps with KD rows. Beside the classes' shares in the data they show whether a
    sampler asks the teachers about some classes rarely or never. Under DDP the labels are gathered from every rank
    (one small collective a step), so that the shares are the global batch's."""
    # a comparison, not bincount: bincount reads the labels' range back to the host, a sync each step on a GPU
    shares = (labels[:, None] == torch.arange(num_labels, device=labels.device)).float().mean(0)
    return {f"{CLASS_SHARES.removeprefix('train/')}{c}": shares[c] for c in range(num_labels)}


def rows_of(outputs: dict, index: torch.Tensor) -> dict:
    """The student's outputs (logits, hidden states, mask) on some of its rows (all of them: no copy)."""
    if index.numel() == outputs["logits"].size(0):
        return outputs
    return {k: tuple(h[index] for h in v) if isinstance(v, tuple) else v[index] for k, v in outputs.items()}
