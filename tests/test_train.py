"""End-to-end runs of both stages on tiny models and fixture data (in-process), resume, DDP, multirun + W&B."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from dkd.run import run
from tests.conftest import ROOT


def read_metrics(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_stage_teacher_stores_teacher_with_metrics(make_cfg):
    cfg = make_cfg("stage=teacher", "task=mrpc")
    score = run(cfg)
    (stored,) = (Path(cfg.paths.teachers_dir) / "mrpc").glob("tiny-teacher-*")
    teacher = json.loads((stored / "metrics.json").read_text())
    assert json.loads((stored / "recipe.json").read_text())["task"] == "mrpc"
    assert set(teacher["dev"]) == {"dev/acc", "dev/f1", "dev/score"} and score == teacher["dev"]["dev/score"]
    assert teacher["kernels"]["aten"] == torch.backends.cpu.get_cpu_capability()  # its last bits depend on them
    assert AutoModelForSequenceClassification.from_pretrained(stored).config.num_labels == 2


def test_distill_fine_tunes_missing_teacher_then_exports_student(make_cfg, capsys):
    cfg = make_cfg("task=rte")
    run(cfg)
    out = capsys.readouterr().out
    assert "teacher base (tiny-teacher-" in out and "student exported to" in out
    metrics = read_metrics(cfg)
    assert {"dev", "seed", "config", "wall_time_s", "train_examples_per_s", "teachers", "kernels"} <= set(metrics)
    assert set(metrics["predicted_classes"]) == {"dev"} and metrics["predicted_classes"]["dev"] in (1, 2)
    assert metrics["config"]["task"]["name"] == "rte" and metrics["train_examples_per_s"] > 0
    student = AutoModelForSequenceClassification.from_pretrained(metrics["student_dir"])
    assert student.config.num_hidden_layers == 2 and student.config.id2label[0] == "entailment"
    csv = Path(cfg.paths.output_dir) / "csv" / "metrics.csv"
    header = csv.read_text().splitlines()[0]
    assert all(k in header for k in ("train/ce", "train/kd", "dev/acc", "lr-AdamW"))
    ckpts = list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))
    assert ckpts
    state = torch.load(ckpts[0], weights_only=False)["state_dict"]
    assert not any(k.startswith("teachers.") for k in state)


def test_distill_reuses_stored_teacher_and_handles_two_dev_splits(make_cfg):
    first = make_cfg("task=mnli", "stage=teacher", out="teacher-run")
    run(first)
    cfg = make_cfg("task=mnli", "teacher=base")
    run(cfg)
    metrics = read_metrics(cfg)
    assert {"dev_m/acc", "dev_mm/acc", "dev/score"} <= set(metrics["dev"])
    assert not (Path(cfg.paths.output_dir) / "teacher-base").exists()  # stored teacher reused, not re-trained


def test_regression_task_distils_with_mse(make_cfg):
    cfg = make_cfg("task=stsb")
    run(cfg)
    assert {"dev/pearson", "dev/spearman"} <= set(read_metrics(cfg)["dev"])


def test_large_teacher_with_its_own_tokenizer(make_cfg):
    cfg = make_cfg("task=sst2", "teacher=large")
    run(cfg)
    assert Path(read_metrics(cfg)["teachers"]["large"]["dir"]).name.startswith("tiny-large-")


def test_same_seed_same_student_whether_teacher_was_trained_now_or_before(make_cfg):
    first = make_cfg("task=sst2", out="first")  # fine-tunes the teacher, then distils
    run(first)
    second = make_cfg("task=sst2", out="second")  # reuses the stored teacher
    run(second)
    assert (Path(second.paths.output_dir) / "teacher-base").exists() is False
    assert read_metrics(first)["dev"] == read_metrics(second)["dev"]


def test_bf16_mixed_precision_with_gradient_accumulation(make_cfg):
    cfg = make_cfg("task=sst2", "trainer.precision=bf16-mixed", "trainer.accumulate_grad_batches=2")
    run(cfg)
    metrics = read_metrics(cfg)
    assert metrics["config"]["trainer"]["precision"] == "bf16-mixed" and "dev/acc" in metrics["dev"]


def test_custom_csv_task(make_cfg, tmp_path):
    rows = ["text,answer,label"] + [f"good plot {i},a,pos" if i % 2 else f"bad plot {i},b,neg" for i in range(24)]
    (tmp_path / "train.csv").write_text("\n".join(rows))
    (tmp_path / "dev.csv").write_text("\n".join(rows[:9]))
    cfg = make_cfg("task=custom", f"task.train_file={tmp_path / 'train.csv'}", f"task.dev_file={tmp_path / 'dev.csv'}",
                   "task.text_columns=[text,answer]", "task.labels=[neg,pos]", "task.metrics=[acc,f1]")
    run(cfg)
    metrics = read_metrics(cfg)
    assert {"dev/acc", "dev/f1"} <= set(metrics["dev"]) and metrics["train_examples"] == 24
    assert len(list((Path(cfg.paths.teachers_dir) / "custom").glob("tiny-teacher-*/metrics.json"))) == 1


def test_adoption_single_rejects_two_teachers_before_any_training(make_cfg):
    cfg = make_cfg("task=sst2", "teacher=both")
    with pytest.raises(ValueError, match="adoption=single takes one teacher"):
        run(cfg)
    assert not Path(cfg.paths.teachers_dir).exists()


def tiny_cli(assets, tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "train.py", *args, f"paths.glue_dir={assets['glue']}", f"paths.log_dir={tmp_path}",
        f"backbone.teachers.base={assets['teacher']}", f"backbone.student.name_or_path={assets['student']}",
        "backbone.student.layers=2", "task.train_limit=16", "finetune.epochs=1", "distill.epochs=1",
        "trainer.enable_progress_bar=false", "compress.enabled=false",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_multirun_with_wandb_gives_one_run_per_job(assets, tmp_path):
    tiny_cli(assets, tmp_path, "-m", "seed=1,2", "logger=wandb")
    jobs = sorted((tmp_path / "multiruns").glob("*/[0-9]"))
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["seed"] in (1, 2)
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1


@pytest.mark.slow  # 11 s: three Optuna trials
def test_optuna_search_runs_trials_and_reports_best(assets, tmp_path):
    out = tiny_cli(assets, tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2",
                   "hydra.sweeper.sampler.n_startup_trials=2")
    sweep = next((tmp_path / "multiruns").iterdir())
    assert sorted(p.name for p in sweep.glob("[0-9]")) == ["0", "1"]
    best = (sweep / "optimization_results.yaml").read_text()
    assert "distill.lr" in best and "best_value" in best
    assert "setup plugin alembic" not in out.stdout + out.stderr


def test_tensorboard_logger(make_cfg):
    cfg = make_cfg("task=sst2", "logger=tensorboard")
    run(cfg)
    assert list((Path(cfg.paths.output_dir) / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpointing_off_keeps_the_last_epoch(make_cfg):
    cfg = make_cfg("task=sst2", "trainer.enable_checkpointing=false")
    run(cfg)
    metrics = read_metrics(cfg)
    assert metrics["selected"] == "last epoch (0), no best-checkpoint selection"
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
    assert Path(metrics["student_dir"], "config.json").is_file()


def test_callbacks_are_added_and_removed_from_the_command_line(make_cfg):
    cfg = make_cfg("task=sst2", "distill.epochs=3", "callbacks=[default,early_stopping]",
                   "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0",
                   "~callbacks.lr_monitor",
                   "+callbacks.every_2._target_=pytorch_lightning.callbacks.ModelCheckpoint",
                   "+callbacks.every_2.every_n_train_steps=2")
    run(cfg)
    rows = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text()
    header = rows.splitlines()[0]
    assert "lr-AdamW" not in header  # lr_monitor removed
    epochs = {line.split(",")[header.split(",").index("epoch")] for line in rows.splitlines()[1:]}
    assert epochs == {"0", "1"}  # min_delta=1 never improves: stopped after patience 1, not 3 epochs
    assert read_metrics(cfg)["selected"].startswith("checkpoint ")
    kept = [p.name for p in (Path(cfg.paths.output_dir) / "checkpoints").glob("*step=*.ckpt")]
    assert kept == ["epoch=1-step=12.ckpt"]



def test_without_the_progress_bar_the_log_has_a_line_per_epoch(make_cfg, caplog):
    cfg = make_cfg("task=sst2", "distill.epochs=2")  # the tests' trainer.enable_progress_bar=false
    with caplog.at_level("INFO", logger="dkd.callbacks"):
        run(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "dkd.callbacks"]
    # the teacher's one epoch, then the student's two (48 examples in batches of 8: 6 steps an epoch)
    assert [line.split(",")[0] for line in lines] == ["epoch 1/1", "epoch 1/2", "epoch 2/2"]
    assert lines[2].startswith("epoch 2/2, step 12/12, ") and "dev/score " in lines[2] and "train/loss " in lines[2]

def test_without_the_best_checkpoint_callback_the_last_epoch_is_kept(make_cfg):
    cfg = make_cfg("task=sst2", "~callbacks.model_checkpoint")
    run(cfg)
    assert read_metrics(cfg)["selected"] == "last epoch (0), no best-checkpoint selection"
    assert not (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").exists()  # the run ended well


def test_a_finished_run_keeps_the_best_weights_only(make_cfg):
    """Sweep-sized checkpoints: the best dev checkpoint without optimizer state; the resumable last.ckpt of both
    stages removed once each ended well, unless keep_last_ckpt=true."""
    cfg = make_cfg("task=sst2")
    run(cfg)
    out = Path(cfg.paths.output_dir)
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("**/*.ckpt"))
    assert [f.split("/")[-2] for f in files] == ["checkpoints", "checkpoints"] and len(files) == 2, files
    assert "teacher-base/checkpoints/" in files[1] and not any(f.endswith(("last.ckpt", "on_exception.ckpt"))
                                                               for f in files)
    for f in files:
        assert "optimizer_states" not in torch.load(out / f, map_location="cpu", weights_only=False)
    kept = make_cfg("task=sst2", "keep_last_ckpt=true", out="kept")
    run(kept)
    last = torch.load(Path(kept.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last["optimizer_states"] and last["loops"]  # resumable


@pytest.mark.parametrize("key", ["data.num_workers=1", "trainer.deterministic=true", "data.cache_dir=null",
                                 "task.dev_limit=8", "trainer.limit_train_batches=2", "callbacks=none"])
def test_offered_keys_run(make_cfg, key):
    cfg = make_cfg("task=sst2", key)
    run(cfg)
    assert "dev/acc" in read_metrics(cfg)["dev"]


def test_resume_points_are_found_from_the_callbacks_own_settings(tmp_path):
    """Under ddp_spawn the main process's checkpoint callbacks never saved (best_model_path is empty): the files to
    remove come from each callback's folder and fixed name; a series ({epoch}-{step}) and an old interruption
    checkpoint stay."""
    import time
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import ModelCheckpoint

    from dkd.callbacks import InterruptCheckpoint
    from dkd.trainer import remove_resumable

    for name in ("last.ckpt", "epoch=0-step=6.ckpt", "on_exception.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 3600
    os.utime(tmp_path / "on_exception.ckpt", (old, old))  # left by an earlier run, not resumed from
    callbacks = [ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None),
                 ModelCheckpoint(dirpath=tmp_path, filename="{epoch}-{step}", monitor=None, save_top_k=-1),
                 InterruptCheckpoint(str(tmp_path))]
    t = SimpleNamespace(checkpoint_callbacks=callbacks[:2], callbacks=callbacks, is_global_zero=True)
    assert remove_resumable(t, since=time.time() - 60) == [str(tmp_path / "last.ckpt")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0-step=6.ckpt", "on_exception.ckpt"]
    assert remove_resumable(t, since=time.time(), ckpt_path=str(tmp_path / "on_exception.ckpt")) == [
        str(tmp_path / "on_exception.ckpt")]  # the one this run resumed from


def test_a_collapsed_student_says_so_in_its_log_metrics_and_predictions(make_cfg, capsys, caplog):
    """A student that predicts one class on every dev row: a warning, predicted_classes 1 in metrics.json, the
    printed summary, and predictions.json of `python -m dkd.ship.evaluate` (the sweep report: tests/test_report.py)."""
    from dkd.ship.evaluate import evaluate_job

    cfg = make_cfg("task=sst2", "callbacks.model_checkpoint=null",
                   "+callbacks.collapse._target_=tests.conftest.Collapse")
    with caplog.at_level("WARNING", logger="dkd"):
        run(cfg)
    assert read_metrics(cfg)["predicted_classes"] == {"dev": 1}
    assert "The student predicts one class for every dev example: it has collapsed" in caplog.text
    assert "COLLAPSED: one class predicted on dev" in capsys.readouterr().out
    assert evaluate_job(Path(cfg.paths.output_dir), ("dev",))["dev"]["predicted_classes"] == 1
