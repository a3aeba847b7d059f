"""Exact resume (mid-epoch interruption + ckpt_path = the uninterrupted run) and DDP = one process."""
import json
import signal
from pathlib import Path

import pytest
import torch

from dkd.run import run
from tests.conftest import make_tiny_model


def state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def dev(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["dev"]


@pytest.mark.parametrize("hook", ["start", "end", "sigterm"])
def test_resumed_mid_epoch_equals_uninterrupted(make_cfg, hook):
    """48 examples, batch 8: 6 steps an epoch. Stopped at step 8 (mid-epoch 1, dropout on) by an exception before or
    after a batch, or by SIGTERM; resumed from the interruption checkpoint: the same last-epoch weights and dev
    metrics as a run that was never stopped."""
    common = ("task=sst2", "distill.epochs=2")
    run(make_cfg(*common, "stage=teacher", out="teacher"))
    whole = make_cfg(*common, out="whole")
    run(whole)
    stopped = make_cfg(*common, "+callbacks.stop._target_=tests.conftest.InterruptAt", "+callbacks.stop.step=8",
                       f"+callbacks.stop.hook={hook}", out="stopped")
    with pytest.raises(SystemExit if hook == "sigterm" else RuntimeError) as stop:
        run(stopped)
    if hook == "sigterm":
        assert stop.value.code == 128 + signal.SIGTERM  # not Lightning's 0: the run did not finish
    ckpt = Path(stopped.paths.output_dir) / "checkpoints" / "on_exception.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 8
    resumed = make_cfg(*common, f"ckpt_path={ckpt}", out="resumed")
    run(resumed)
    assert dev(resumed) == dev(whole)
    final, expected = state(ckpt.parent / "last.ckpt"), state(Path(whole.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert final.keys() == expected.keys()
    for key in expected:
        assert torch.equal(final[key], expected[key]), key


def test_ddp_sim_equals_one_process_with_the_global_batch(make_cfg, tmp_path):
    """2 processes x batch 4 (trainer=ddp_sim) and 1 process x batch 8 see the same global batches; with dropout
    off they end with the same student."""
    student = make_tiny_model(tmp_path / "student-nodrop", dropout=0.0)
    teacher = make_tiny_model(tmp_path / "teacher-nodrop", dropout=0.0)
    models = (f"backbone.student.name_or_path={student}", f"backbone.teachers.base={teacher}", "task=sst2",
              "distill.epochs=2")
    run(make_cfg(*models, "stage=teacher", out="teacher"))
    (stored,) = (tmp_path / "teachers" / "sst2").glob("teacher-nodrop-*")
    given = f"teacher.dirs.base={stored}"  # the recipe key holds trainer.devices: give both runs the same teacher
    one = make_cfg(*models, given, "distill.batch_size=8", out="one")
    run(one)
    two = make_cfg(*models, given, "distill.batch_size=4", "trainer=ddp_sim", "trainer.enable_progress_bar=false",
                   out="two")
    run(two)
    a = state(Path(one.paths.output_dir) / "checkpoints" / "last.ckpt")
    b = state(Path(two.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), (key, (a[key] - b[key]).abs().max())
    assert dev(one) == pytest.approx(dev(two), abs=1e-6)
    metrics = json.loads((Path(two.paths.output_dir) / "metrics.json").read_text())
    assert metrics["train_examples"] == 48 and metrics["train_examples_per_s"] > 0
