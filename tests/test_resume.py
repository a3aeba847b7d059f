"""Exact resume (an interruption, then ckpt_path = the uninterrupted run) and DDP = one process."""
import json
import signal
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from torch.multiprocessing.spawn import ProcessRaisedException  # an exception in a DDP worker

from dkd.run import run
from tests.conftest import asked_flops, gloo_teardown_flaky, make_tiny_model, shrunk_cfg


@pytest.fixture
def make_cfg(make_cfg):
    """Every run here keeps its last.ckpt (keep_last_ckpt=true): the tests compare whole and resumed runs' weights."""
    return lambda *overrides, **kwargs: make_cfg(*overrides, "keep_last_ckpt=true", **kwargs)


def state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def metrics(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def dev(cfg) -> dict:
    return metrics(cfg)["dev"]


def method_flops(cfg) -> dict:
    return asked_flops(metrics(cfg)["flops"])


def stored_teacher(make_cfg, *overrides, role: str = "base") -> str:
    """Fine-tune the teacher once and give its folder to every run of a test (the stop callback is in the recipe)."""
    cfg = make_cfg(*overrides, "stage=teacher", out="teacher")
    run(cfg)
    (folder,) = (p for p in (Path(cfg.paths.teachers_dir) / cfg.task.name).iterdir() if not p.name.startswith("."))
    return f"teacher.dirs.{role}={folder}"


@pytest.fixture(scope="module")
def sst2_teacher(assets, tmp_path_factory) -> str:
    """:func:`stored_teacher` of ``task=sst2`` once for the module: a test that takes it fine-tunes no teacher."""
    root = tmp_path_factory.mktemp("teacher")
    given = stored_teacher(lambda *overrides, out: shrunk_cfg(assets, root, *overrides, out=out), "task=sst2")
    GlobalHydra.instance().clear()
    return given


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    x, y = state(a), state(b)
    assert x.keys() == y.keys()
    for key in x:
        assert torch.allclose(x[key], y[key], atol=atol, rtol=0), (key, (x[key] - y[key]).abs().max())


def stop_and_resume(make_cfg, common: tuple, hook: str, step: int, resume_from: str = "on_exception.ckpt"):
    stopped = make_cfg(*common, "+callbacks.stop._target_=tests.conftest.InterruptAt", f"+callbacks.stop.step={step}",
                       f"+callbacks.stop.hook={hook}", out="stopped")
    with pytest.raises(SystemExit if hook == "sigterm" else (RuntimeError, ProcessRaisedException)) as stop:
        run(stopped)
    if hook == "sigterm":
        assert stop.value.code == 128 + signal.SIGTERM  # not Lightning's 0: the run did not finish
    ckpt = Path(stopped.paths.output_dir) / "checkpoints" / resume_from
    resumed = make_cfg(*common, f"ckpt_path={ckpt}", out="resumed")
    run(resumed)
    return ckpt, resumed


# 48 examples, batch 8: 6 steps an epoch; step 8 is mid-epoch 1, step 6 the boundary between the epochs.
# Three cases in the default run (before a batch, SIGTERM at an epoch's end, the random sampler's restored draws); the
# other four are slow (python -m pytest -m slow).
@pytest.mark.parametrize("hook, step, resume_from, sampler", [
    ("start", 8, "on_exception.ckpt", "none"),
    pytest.param("end", 8, "on_exception.ckpt", "none", marks=pytest.mark.slow),
    pytest.param("sigterm", 8, "on_exception.ckpt", "none", marks=pytest.mark.slow),
    pytest.param("end", 6, "on_exception.ckpt", "none", marks=pytest.mark.slow),
    ("sigterm", 6, "on_exception.ckpt", "none"),
    pytest.param("end", 8, "last.ckpt", "none", marks=pytest.mark.slow),
    ("end", 8, "on_exception.ckpt", "random"),  # its draws come from the restored RNG
])
def test_resumed_run_equals_uninterrupted(make_cfg, hook, step, resume_from, sampler, sst2_teacher):
    """Stopped by an exception before or after a batch, or by SIGTERM, mid-epoch or at an epoch's end (dropout on);
    resumed from the interruption checkpoint or from the last epoch end: the same final weights, bit for bit, and
    the same dev metrics as a run that was never stopped."""
    common = ("task=sst2", "distill.epochs=2", f"sampler={sampler}", "sampler.ratio=0.5",
              sst2_teacher)
    whole = make_cfg(*common, out="whole")
    run(whole)
    ckpt, resumed = stop_and_resume(make_cfg, common, hook, step, resume_from)
    if resume_from == "on_exception.ckpt":
        assert torch.load(ckpt, weights_only=False)["global_step"] == step
    assert dev(resumed) == dev(whole)
    assert method_flops(resumed) == method_flops(whole)  # counted once, whatever was redone
    assert_same_weights(ckpt.parent / "last.ckpt", Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")


def test_resume_with_gradient_accumulation(make_cfg, sst2_teacher):
    """Accumulating 2 batches a step (3 steps an epoch): stopped right after optimizer step 4, mid-epoch 1."""
    common = ("task=sst2", "distill.epochs=2", "trainer.accumulate_grad_batches=2",
              sst2_teacher)
    whole = make_cfg(*common, out="whole")
    run(whole)
    ckpt, resumed = stop_and_resume(make_cfg, common, "end", 4)
    assert dev(resumed) == dev(whole)
    assert_same_weights(ckpt.parent / "last.ckpt", Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")


def nodrop_models(tmp_path) -> tuple[str, ...]:
    student = make_tiny_model(tmp_path / "student-nodrop", dropout=0.0)
    teacher = make_tiny_model(tmp_path / "teacher-nodrop", dropout=0.0)
    return f"backbone.student.name_or_path={student}", f"backbone.teachers.base={teacher}"


@pytest.mark.slow  # 10 s; tests/test_global_batch.py runs DDP = one process with the dynamic strategies by default
@gloo_teardown_flaky
def test_ddp_sim_equals_one_process_with_the_global_batch(make_cfg, tmp_path):
    """2 processes x batch 4 (trainer=ddp_sim) and 1 process x batch 8 see the same global batches; with dropout
    off they end with the same student."""
    models = (*nodrop_models(tmp_path), "task=sst2", "distill.epochs=2")
    given = stored_teacher(make_cfg, *models)  # the recipe key holds trainer.devices: one teacher for both runs
    one = make_cfg(*models, given, "distill.batch_size=8", out="one")
    run(one)
    two = make_cfg(*models, given, "distill.batch_size=4", "trainer=ddp_sim", "trainer.enable_progress_bar=false",
                   out="two")
    run(two)
    assert_same_weights(Path(one.paths.output_dir) / "checkpoints" / "last.ckpt",
                        Path(two.paths.output_dir) / "checkpoints" / "last.ckpt", atol=1e-5)
    assert dev(one) == pytest.approx(dev(two), abs=1e-6)
    metrics = json.loads((Path(two.paths.output_dir) / "metrics.json").read_text())
    assert metrics["train_examples"] == 48 and metrics["train_examples_per_s"] > 0


@pytest.mark.slow  # 30 s; DDP = one process stays in the default run
@gloo_teardown_flaky
def test_ddp_sim_resumed_equals_uninterrupted(make_cfg, sst2_teacher):
    """Two processes, dropout on, stopped mid-epoch 1 and resumed from the end of epoch 0: each rank's own RNG state
    comes back with the checkpoint. (Under ddp_spawn Lightning runs the exception hooks in the main process only,
    which holds no trained state, so there is no on_exception.ckpt; trainer=ddp on GPUs writes one.)"""
    common = ("task=sst2", "distill.epochs=2", "distill.batch_size=4", "trainer=ddp_sim",
              "trainer.enable_progress_bar=false", sst2_teacher)
    whole = make_cfg(*common, out="whole")
    run(whole)
    ckpt, resumed = stop_and_resume(make_cfg, common, "end", 8, resume_from="last.ckpt")
    assert dev(resumed) == dev(whole)
    assert_same_weights(ckpt.parent / "last.ckpt", Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")


@pytest.mark.slow  # bf16 is emulated on CPUs without AMX (6-10 s); bf16 runs and exact resume stay in the default run
def test_resume_under_bf16_equals_uninterrupted(make_cfg):
    """bf16-mixed on the CPU, entropy selection (its scoring pass under autocast): stopped mid-epoch 1 and resumed, the
    same weights bit for bit, the same dev metrics and FLOPs as the run never stopped."""
    common = ("task=sst2", "distill.epochs=2", "trainer.precision=bf16-mixed", "sampler=entropy", "sampler.ratio=0.5",
              stored_teacher(make_cfg, "task=sst2", "trainer.precision=bf16-mixed"))
    whole = make_cfg(*common, out="whole")
    run(whole)
    ckpt, resumed = stop_and_resume(make_cfg, common, "end", 8)
    assert dev(resumed) == dev(whole) and method_flops(resumed) == method_flops(whole)
    assert_same_weights(ckpt.parent / "last.ckpt", Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")


def test_resume_with_a_pooled_sampler(make_cfg, sst2_teacher):
    """Pool 2 x batch 8: 16 rows a step, 3 steps an epoch; stopped at step 4, mid-epoch 1."""
    common = ("task=sst2", "distill.epochs=2", "sampler=entropy", "sampler.ratio=0.5", "sampler.pool=2",
              sst2_teacher)
    whole = make_cfg(*common, out="whole")
    run(whole)
    ckpt, resumed = stop_and_resume(make_cfg, common, "end", 4)
    assert dev(resumed) == dev(whole) and method_flops(resumed) == method_flops(whole)
    assert_same_weights(ckpt.parent / "last.ckpt", Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")


def test_resume_with_hidden_state_alignment_and_a_projection(make_cfg, tmp_path):
    """objective=kd_pt with a teacher of another hidden size: the projection and its optimizer state resume too."""
    from tests.conftest import make_tiny_model

    wide = make_tiny_model(tmp_path / "wide", layers=2, hidden=48)
    common = ("task=sst2", "distill.epochs=2", "teacher=large", f"backbone.teachers.large={wide}", "objective=kd_pt",
              "weighting=uncertainty", stored_teacher(make_cfg, "task=sst2", "teacher=large",
                                                      f"backbone.teachers.large={wide}", role="large"))
    whole = make_cfg(*common, out="whole")
    run(whole)
    ckpt, resumed = stop_and_resume(make_cfg, common, "end", 4)
    assert dev(resumed) == dev(whole)
    assert "objective.projections.large.weight" in state(ckpt.parent / "last.ckpt")
    assert_same_weights(ckpt.parent / "last.ckpt", Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")


def test_bf16_runs_the_scoring_pass_and_the_teachers_under_autocast_and_counts_the_same_flops(make_cfg, monkeypatch,
                                                                                               sst2_teacher):
    """Lightning's bf16-mixed autocast covers the whole training step: the scoring pass and the teachers' forwards
    compute in bf16; the FLOP count of the same work is the same as in fp32."""
    from dkd.cache import TeacherOutputs
    from dkd.module import DistillSystem

    seen = {}

    def recording(real, name):
        def wrapped(self, *args, **kwargs):
            out = real(self, *args, **kwargs)
            seen.setdefault(name, set()).add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                                             else torch.float32)
            return out
        return wrapped

    monkeypatch.setattr(DistillSystem, "score", recording(DistillSystem.score, "score"))
    monkeypatch.setattr(TeacherOutputs, "forward", recording(TeacherOutputs.forward, "teacher"))
    common = ("task=sst2", "sampler=entropy", "sampler.ratio=0.5", "distill.teacher_cache=off")
    bf16 = make_cfg(*common, sst2_teacher, "trainer.precision=bf16-mixed", out="bf16")
    run(bf16)
    assert seen == {"score": {torch.bfloat16}, "teacher": {torch.bfloat16}}
    seen.clear()
    fp32 = make_cfg(*common, sst2_teacher, out="fp32")
    run(fp32)
    assert seen == {"score": {torch.float32}, "teacher": {torch.float32}}
    # the same work, the same analytic count: the scoring pass covers every row, full KD every batch (the selected
    # rows may differ, as bf16 can reorder two rows of nearly equal uncertainty, and with them the padded widths)
    a, b = method_flops(bf16), method_flops(fp32)
    assert a["gflops"]["student_scoring"] == b["gflops"]["student_scoring"] > 0
    assert a["gflops_per_example"]["full_kd"] == b["gflops_per_example"]["full_kd"]
