"""Preempted and timed-out jobs resume, not restart: through the submitit local launcher (which sends USR2 and
requeues as SLURM does), in-process with a stand-in for submitit's handler, and as a plain sbatch job (USR1 and
``scontrol requeue``)."""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dkd import requeue
from dkd.run import run
from tests.conftest import ROOT

SIGNAL_AT = "+callbacks.signal._target_=tests.conftest.SignalAt"
SMALL = ("finetune.batch_size=4", "distill.batch_size=2", "distill.epochs=2")  # 4 teacher steps, 16 student steps


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def files(job: Path) -> set[str]:
    """What a job leaves on disk, less the logs that a requeue appends to."""
    skip = ("train.log", ".hydra")
    names = (str(p.relative_to(job)) for p in job.rglob("*") if p.is_file())
    return {n for n in names if not n.startswith(skip)}


def local_multirun(assets, log_dir: Path, env: dict, *overrides: str) -> Path:
    cmd = [sys.executable, "train.py", "-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", "seed=1",
           f"paths.glue_dir={assets['glue']}", f"paths.log_dir={log_dir}",
           f"backbone.teachers.base={assets['teacher']}",
           f"backbone.student.name_or_path={assets['student']}", "backbone.student.layers=2", "task.train_limit=16",
           "finetune.epochs=1", "trainer.enable_progress_bar=false", "compress.enabled=false", SIGNAL_AT, *SMALL,
           *overrides]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "offline", **env})
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = (log_dir / "multiruns").iterdir()
    return sweep


def steps_by_attempt(log: Path, stage: str) -> list[list[int]]:
    """The steps each process (attempt) trained in ``stage``, in order."""
    attempts: dict[str, list[int]] = {}
    for line in log.read_text().split("\n"):
        if line:
            pid, s, step = line.split()
            if s == stage:
                attempts.setdefault(pid, []).append(int(step))
    return list(attempts.values())


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory) -> Path:
    """The uninterrupted job."""
    return local_multirun(assets, tmp_path_factory.mktemp("reference"), {}) / "0"


def check_resumed(job: Path, reference: Path, attempts: int) -> dict:
    result = json.loads((job / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert result["attempts"] == attempts and expected["attempts"] == 1
    assert result["dev"] == expected["dev"] and result["flops"] == expected["flops"]  # FLOPs counted once
    assert same_weights(job / "student", reference / "student")  # bit for bit
    assert files(job) == files(reference)  # no marker, no interruption checkpoint left
    sweep = job.parent
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary[0]["n"] == 1  # one job, listed once
    return result


def test_a_job_preempted_mid_epoch_resumes_in_its_folder(assets, tmp_path, reference):
    steps = tmp_path / "steps.txt"
    sweep = local_multirun(assets, tmp_path, {"DKD_SIGNAL_AT": "student:3", "DKD_STEPS_LOG": str(steps)})
    assert sorted(p.name for p in sweep.glob("[0-9]*")) == ["0"]
    job = sweep / "0"
    check_resumed(job, reference, attempts=2)
    first, second = steps_by_attempt(steps, "student")
    assert first == [1, 2, 3] and second == list(range(4, 17))  # resumed at step 4, mid-epoch: not from step 0
    log = (job / "train.log").read_text()
    assert "USR2 received: stopping after this training batch" in log
    assert f"Attempt 2 of this job: resuming distill from {job}/checkpoints/on_exception.ckpt" in log
    assert any("Requeued job" in p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))


@pytest.mark.slow  # 40 s: three attempts, and a teacher's fine-tuning interrupted
@pytest.mark.parametrize("at, attempts", [("student:3,student:9", 3), ("teacher:2", 2)])
def test_requeued_again_or_during_the_teachers_fine_tuning(assets, tmp_path, reference, at, attempts):
    steps = tmp_path / "steps.txt"
    job = local_multirun(assets, tmp_path, {"DKD_SIGNAL_AT": at, "DKD_STEPS_LOG": str(steps)}) / "0"
    check_resumed(job, reference, attempts)
    stage = at.split(":")[0]
    trained = steps_by_attempt(steps, stage)
    assert sum(trained, []) == list(range(1, len(sum(trained, [])) + 1))  # every step once, none redone
    assert len(trained) == attempts
    if stage == "teacher":
        (stored,) = (tmp_path / "teachers").glob("*/*/model.safetensors")
        (expected,) = (reference.parent.parent.parent / "teachers").glob("*/*/model.safetensors")
        assert same_weights(stored.parent, expected.parent)
        assert not list((tmp_path / "teachers").rglob("*.staging-*"))


def test_in_process_the_marker_points_at_the_interruption_checkpoint(make_cfg, monkeypatch, tmp_path):
    """submitit's USR2 handler (a stand-in here) requeues after DKD saved; the next attempt in the same folder
    resumes from the marker and ends with the uninterrupted run's weights."""
    calls = []

    def submitit_handler(signum, frame):
        calls.append(signum)
        raise SystemExit(144)  # what submitit's local requeue exits with

    whole = make_cfg(SIGNAL_AT, *SMALL, "seed=3", out="whole")
    run(whole)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        cfg = make_cfg(SIGNAL_AT, *SMALL, "seed=3", out="job")
        with pytest.raises(SystemExit) as stop:
            run(cfg)
        assert stop.value.code == 144 and calls == [signal.SIGUSR2]
        out = Path(cfg.paths.output_dir)
        marker = json.loads((out / requeue.MARKER).read_text())
        assert marker["stage"] == "distill" and marker["attempt"] == 1 and marker["signal"] == "SIGUSR2"
        assert marker["ckpt"] == str(out / "checkpoints" / "on_exception.ckpt")
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler  # DKD's handler is gone with the run
        monkeypatch.delenv("DKD_SIGNAL_AT")
        run(cfg)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert json.loads((out / "metrics.json").read_text())["attempts"] == 2
    assert same_weights(out / "student", Path(whole.paths.output_dir) / "student")
    with open(out / "csv" / "metrics.csv", newline="") as fh:  # one log of the whole run, both attempts in it
        logged = [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert logged == sorted(set(logged)) and logged[0] < 5 and logged[-1] >= 14
    assert not (out / requeue.MARKER).exists() and not (out / "checkpoints" / "on_exception.ckpt").exists()


def test_a_plain_sbatch_job_requeues_itself_on_usr1(make_cfg, monkeypatch, tmp_path):
    """``#SBATCH --signal=USR1@120 --requeue`` around ``python train.py``: DKD saves, calls ``scontrol requeue`` and
    the requeued job (same SLURM job id, same run folder) resumes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.txt"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NAME", "distil.sbatch")
    monkeypatch.setenv("DKD_SIGNAL", "USR1")
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:2")
    cfg = make_cfg(SIGNAL_AT, *SMALL, "logger=many", out="runs/slurm-4242")
    with pytest.raises(SystemExit) as stop:
        run(cfg)
    assert stop.value.code == 128 + signal.SIGUSR1
    assert calls.read_text().split() == ["requeue", "4242"]
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / requeue.MARKER).read_text())["ckpt"].endswith("on_exception.ckpt")
    assert not list(out.rglob("hpc_ckpt_*"))  # Lightning's own USR1 save (mid-step) never ran
    monkeypatch.delenv("DKD_SIGNAL_AT")
    run(cfg)
    assert json.loads((out / "metrics.json").read_text())["attempts"] == 2
    runs = list((out / "wandb").glob("offline-run-*"))  # offline, each attempt its own folder of the one W&B run
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1
