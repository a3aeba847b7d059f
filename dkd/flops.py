"""Analytic FLOPs of transformer encoders, counted as the forwards happen (multiply-add = 2 FLOPs).

One encoder forward over ``rows`` sequences padded to ``width`` tokens (what the kernels compute), with hidden size
H, feed-forward size I, N layers and C labels:

    per layer:  2·L·(4H² + 2HI)     Q, K, V and output projections, the two feed-forward matrices
              + 4·L²·H              attention scores QKᵀ and their weighting of V
    once:       2·H² + 2·H·C        pooler (first token) and classifier

with L = width, times ``rows``. Embedding look-ups, layer norms, softmax and biases are left out (under 1% at these
shapes). A backward pass counts 2 × its forward.
"""
from __future__ import annotations

import inspect

import torch
from pytorch_lightning import Callback

from dkd.callbacks import own_rank, per_rank
from dkd.data import batch_size


def forward_flops(config, rows: int, width: int) -> int:
    """FLOPs of one forward of an encoder classifier with ``config`` over ``rows`` × ``width`` tokens."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * width * (4 * h * h + 2 * h * i) + 4 * width * width * h
    return rows * (n * per_layer + 2 * h * h + 2 * h * config.num_labels)


def token_shape(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple[int, int]:
    """(rows, width) of a forward's tokens, however the model was called: ``input_ids`` by keyword or by position, or
    ``inputs_embeds`` (rows × width × hidden) in their place."""
    given = signature.bind_partial(*args, **kwargs).arguments
    if given.get("input_ids") is not None:
        return tuple(given["input_ids"].shape[:2])
    if given.get("inputs_embeds") is not None:
        return tuple(given["inputs_embeds"].shape[:2])
    raise ValueError("FlopCounter: a forward without input_ids or inputs_embeds; cannot count its FLOPs.")


class FlopCounter(Callback):
    """Counts the FLOPs of every training forward with hooks on the student and the teachers: the student's scoring
    pass (no gradient), its training forward plus backward (2 × forward), and the teachers: ``teacher`` is what the
    method asks of them (a forward over the rows it queries), ``teacher_spent`` the forwards that ran (cache hits
    cost nothing), and ``teacher_<name>`` what each teacher is asked. For each batch it also counts what full KD
    on the same batch would cost (every teacher's forward and the student's forward + backward on every row: with
    two teachers, the authors' way of running both on every instance), so that ``ratio`` compares like with like;
    ``teacher_all_rows`` is that reference's teacher part.

    Totals are summed over DDP ranks, logged as ``flops/*`` at each epoch end (GFLOPs) and kept in checkpoints."""

    KINDS = ("student_scoring", "student_train", "teacher", "teacher_spent", "teacher_all_rows", "full_kd", "examples")

    def __init__(self):
        self.totals = dict.fromkeys(self.KINDS, 0)
        self._batch = dict.fromkeys(self.KINDS, 0)  # added to the totals when the batch's step is done
        self._hooks = []

    def on_fit_start(self, trainer, pl_module) -> None:
        """Hooks on the trained model (the student, or a teacher being fine-tuned) and on the frozen teachers."""
        self._trained = pl_module.role
        self._models = {pl_module.role: pl_module.model, **dict(getattr(pl_module, "teachers", {}).items())}
        self._queries = getattr(pl_module, "teacher_outputs", {})
        for role in self._queries:
            self.totals.setdefault(f"teacher_{role}", 0)
        for role, model in self._models.items():
            self._hooks.append(model.register_forward_hook(self._hook(trainer, role, model), with_kwargs=True))

    def on_fit_end(self, trainer, pl_module) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _hook(self, trainer, role: str, model):
        # its argument names, for positional calls (of the model itself, where torch.compile wraps it)
        config, signature = model.config, inspect.signature(getattr(model, "_orig_mod", model).forward)

        def count(module, args, kwargs, output) -> None:
            if not trainer.training:  # dev evaluations are not training cost
                return
            rows, width = token_shape(signature, args, kwargs)
            flops = forward_flops(config, rows, width)
            if role != self._trained:
                self._batch["teacher_spent"] += flops
            elif torch.is_grad_enabled():
                self._batch["student_train"] += 3 * flops  # forward + backward (2 × forward)
            else:
                self._batch["student_scoring"] += flops
        return count

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        size = batch_size(batch)
        self._batch = dict.fromkeys(self.totals, 0)
        for queries in self._queries.values():
            queries.drain_requests()  # left by a batch interrupted mid-step
        self._batch["examples"] = size
        for role, model in self._models.items():
            flops = sum(forward_flops(model.config, rows, width)
                        for rows, width in self._full_kd_batches(trainer, pl_module, batch, role))
            self._batch["full_kd"] += 3 * flops if role == self._trained else flops
            if role != self._trained:
                self._batch["teacher_all_rows"] += flops

    @staticmethod
    def _full_kd_batches(trainer, pl_module, batch, role: str) -> list[tuple[int, int]]:
        """(rows, padded width) of the batches full KD would run on the same data: the batch itself, or, for a pool of
        p batches (``sampler.pool``), its p consecutive B-row batches, each padded to its own longest row."""
        ids = batch["inputs"][role]["input_ids"]
        pool = getattr(getattr(pl_module, "sampler", None), "pool", 1)
        if pool == 1:
            return [tuple(ids.shape)]
        step = trainer.train_dataloader.batch_size // pool
        lengths = batch["inputs"][role]["attention_mask"].sum(-1).tolist()
        return [(len(lengths[i:i + step]), max(lengths[i:i + step])) for i in range(0, len(lengths), step)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for role, queries in self._queries.items():
            for rows, width in queries.drain_requests():
                flops = forward_flops(self._models[role].config, rows, width)
                self._batch["teacher"] += flops
                self._batch[f"teacher_{role}"] += flops
        for kind, value in self._batch.items():  # a batch interrupted mid-step is counted when it is redone
            self.totals[kind] += value

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        scale = {k: 1 if k == "examples" else 1e-9 for k in self.totals}  # examples as a count, the rest in GFLOPs
        pl_module.log_dict({f"flops/{k}": torch.tensor(float(v * scale[k]), device=pl_module.device)
                            for k, v in self.totals.items()}, reduce_fx="sum", sync_dist=True)

    def state_dict(self) -> dict:
        return per_rank(dict(self.totals))  # each rank's own counts: they are summed over ranks when logged

    def load_state_dict(self, state: dict) -> None:
        self.totals.update(own_rank(state) if "ranks" in state else state)


def summary(metrics: dict) -> dict | None:
    """``metrics.json``'s ``flops`` from the logged totals (GFLOPs): per kind, per training example, and the ratio to
    full KD on the same batches of the method's cost (``total``) and of what ran (``total_spent``: cache hits
    spare teacher forwards)."""
    g = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("flops/")}
    if not g.get("examples"):
        return None
    student = g["student_scoring"] + g["student_train"]
    total, spent = student + g["teacher"], student + g["teacher_spent"]
    sig = lambda x: float(f"{x:.4g}")  # noqa: E731 - 4 significant digits, whatever the model's size
    per = lambda x: sig(x / g["examples"])  # noqa: E731 - GFLOPs per training example
    kinds = ("student_scoring", "student_train", "teacher", "teacher_spent")
    return {
        "gflops": {**{k: sig(g[k]) for k in kinds}, "total": sig(total), "total_spent": sig(spent)},
        "gflops_per_example": {"student": per(student), "teacher": per(g["teacher"]),
                               "teacher_spent": per(g["teacher_spent"]), "total": per(total),
                               "total_spent": per(spent), "full_kd": per(g["full_kd"])},
        "teacher_per_example": {
            **{k.removeprefix("teacher_"): per(v) for k, v in g.items() if k.startswith("teacher_")
               and k not in ("teacher_spent", "teacher_all_rows")},
            "all_teachers_on_every_row": per(g["teacher_all_rows"])},
        "ratio_to_full_kd": round(total / g["full_kd"], 4),
        "ratio_spent_to_full_kd": round(spent / g["full_kd"], 4),
        "examples": int(g["examples"]),
    }
