"""Train / eval modes through a real ``Trainer.fit`` (Lightning 2.6 no longer calls ``.train()`` and HF loads models in
eval mode, so only a real run shows the modes a model trains in): the modes of every module, recorded inside
``training_step``, the scoring pass and ``validation_step``, for both stages, with and without the two options."""
from __future__ import annotations

import functools
import warnings

import pytest

from dkd.module import DistillSystem, FineTuneSystem
from dkd.run import run


def modes(*modules) -> set[bool]:
    """The ``training`` flags of the modules and all their submodules (dropout layers included)."""
    return {m.training for module in modules for m in module.modules()}


@pytest.fixture
def recorded(monkeypatch):
    """Wraps the systems' steps so that each call records the modes of the trained model and the teachers."""
    seen: dict[str, list[dict]] = {"training_step": [], "score": [], "validation_step": []}

    def spy(cls, name):
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapped(self, *args, **kwargs):
            entry = {"model": modes(self.model)}
            if hasattr(self, "teachers"):
                entry["teachers"] = modes(*self.teachers.values())
            seen[name].append(entry)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapped)

    for cls in (FineTuneSystem, DistillSystem):
        spy(cls, "training_step")
        spy(cls, "validation_step")
    original_score = DistillSystem.score

    def score(self, batch):  # the mode inside the scoring pass: while the student's forward runs
        hook = self.model.register_forward_pre_hook(
            lambda m, *_: seen["score"].append({"model": modes(m), "teachers": modes(*self.teachers.values())}))
        try:
            return original_score(self, batch)
        finally:
            hook.remove()

    monkeypatch.setattr(DistillSystem, "score", score)
    return seen


def test_teacher_fine_tuning_trains_with_dropout_and_evaluates_without(make_cfg, recorded):
    run(make_cfg("stage=teacher", "task=sst2"))
    assert recorded["training_step"] and all(e["model"] == {True} for e in recorded["training_step"])
    assert recorded["validation_step"] and all(e["model"] == {False} for e in recorded["validation_step"])


@pytest.mark.parametrize("teacher_dropout", [False, True])
@pytest.mark.parametrize("score_dropout", [False, True])
def test_distillation_modes(make_cfg, recorded, teacher_dropout, score_dropout):
    run(make_cfg("task=sst2", "sampler=entropy", "sampler.ratio=0.5", f"sampler.score_dropout={score_dropout}",
                 f"distill.teacher_dropout={teacher_dropout}", "distill.teacher_cache=off"))
    distil_steps = [e for e in recorded["training_step"] if "teachers" in e]  # after the teacher's fine-tuning
    assert distil_steps and all(e["model"] == {True} for e in distil_steps)  # the student: dropout on
    assert all(e["teachers"] == {teacher_dropout} for e in distil_steps)
    assert recorded["score"] and all(e["model"] == {score_dropout} for e in recorded["score"])
    assert all(e["teachers"] == {teacher_dropout} for e in recorded["score"])
    evaluations = [e for e in recorded["validation_step"] if "teachers" in e]
    assert evaluations and all(e["model"] == {False} and e["teachers"] == {False} for e in evaluations)


def eval_mode_warnings(cfg) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(cfg)
    return [str(w.message) for w in caught if "in eval mode" in str(w.message)]


def test_eval_mode_warning_is_silenced_for_the_frozen_teachers_only(make_cfg, monkeypatch):
    """The frozen teachers are in eval mode on purpose, so Lightning's warning about them is not shown; a run in which
    any other module starts training in eval mode (here: the student, as HF loads it, with DKD's ``.train()`` at the
    start of ``fit`` taken out) still shows it."""
    assert eval_mode_warnings(make_cfg("task=sst2", out="normal")) == []
    monkeypatch.setattr(DistillSystem, "on_fit_start", lambda self: None)
    assert eval_mode_warnings(make_cfg("task=sst2", out="student-in-eval-mode"))
