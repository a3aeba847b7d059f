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
import yaml
from safetensors.torch import load_file

from dkd.jobs import requeue
from dkd.run import run
from dkd.studies.report import collect, sweep_table
from tests.conftest import ROOT, asked_flops

SIGNAL_AT = "+callbacks.signal._target_=tests.conftest.SignalAt"
SMALL = ("finetune.batch_size=4", "distill.batch_size=2", "distill.epochs=2")  # 4 teacher steps, 16 student steps


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def files(job: Path, teacher: bool = True) -> set[str]:
    """What a job leaves on disk, less the logs that a requeue appends to (and, ``teacher=False``, less the fine-tuning
    of a teacher: of two jobs needing one teacher, the first to take the store's lock fine-tunes it)."""
    skip = ("train.log", ".hydra") + (() if teacher else ("teacher-",))
    names = (str(p.relative_to(job)) for p in job.rglob("*") if p.is_file())
    return {n for n in names if not n.startswith(skip)}


def train(assets, log_dir: Path, env: dict, *args: str) -> None:
    cmd = [sys.executable, "train.py", *args, f"paths.glue_dir={assets['glue']}", f"paths.log_dir={log_dir}",
           f"backbone.teachers.base={assets['teacher']}", f"backbone.student.name_or_path={assets['student']}",
           "backbone.student.layers=2", "task.train_limit=16", "finetune.epochs=1", "trainer.log_every_n_steps=1",
           "trainer.enable_progress_bar=false", "compress.enabled=false", SIGNAL_AT, *SMALL]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WANDB_MODE": "offline", **env})
    assert out.returncode == 0, out.stderr[-3000:]


def local_multirun(assets, log_dir: Path, env: dict, seeds: str, *overrides: str) -> Path:
    train(assets, log_dir, env, "-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", f"seed={seeds}",
          *overrides)
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


def interrupted(assets, tmp_path, at: str, seeds: str = "1,1") -> tuple[Path, Path]:
    """A multirun with job 0 signalled at ``at``: its job 0 and the log of the steps each attempt trained. By
    default two copies of one job (``seed=1,1``): job 1, never signalled, is the uninterrupted reference, and both
    jobs end with the same teacher whichever of them fine-tunes it."""
    steps = tmp_path / "steps.txt"
    env = {"DKD_SIGNAL_AT": at, "DKD_SIGNAL_JOB": "0", "DKD_STEPS_LOG": str(steps)}
    return local_multirun(assets, tmp_path, env, seeds) / "0", steps


def check_resumed(job: Path, attempts: int) -> None:
    """Job 0 of the sweep, interrupted, against job 1, the same job untouched."""
    reference = job.parent / "1"
    result = json.loads((job / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert result["attempts"] == attempts and expected["attempts"] == 1
    assert result["dev"] == expected["dev"]
    assert asked_flops(result["flops"]) == asked_flops(expected["flops"])  # counted once, whatever was redone
    assert same_weights(job / "student", reference / "student")  # bit for bit
    assert files(job, teacher=False) == files(reference, teacher=False)  # no marker, no interruption checkpoint
    with open(job / "csv" / "metrics.csv", newline="") as fh:  # one log of the whole run, every attempt in it
        logged = [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert logged == sorted(set(logged)) and logged[0] < 3 and logged[-1] >= 14
    sweep = job.parent
    assert sorted(p.name for p in sweep.glob("[0-9]*")) == ["0", "1"]
    (row,) = json.loads((sweep / "summary.json").read_text())
    assert row["n"] == 2  # each job listed once


@pytest.mark.slow  # 20 s; in the default run the same handler and marker run in-process (the test below)
def test_a_job_preempted_mid_epoch_resumes_in_its_folder(assets, tmp_path):
    """A multirun of two submitit jobs through the local launcher, one sent USR2 at step 3 of 16: both end once, the
    interrupted one resumed; each job ran as a submitit job with the launcher's CPUs as its threads."""
    job, steps = interrupted(assets, tmp_path, "student:3")
    sweep = job.parent
    check_resumed(job, attempts=2)
    submitted = {p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()}
    for row in collect(sweep):
        folder = sweep / row["job"]
        hydra_cfg = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["launcher"]["_target_"].endswith("LocalLauncher")
        assert str(hydra_cfg["job"]["id"]) in submitted  # submitit's job id, set by the launcher in the job
        config = row["result"]["config"]
        assert config["trainer"]["num_nodes"] == 1 == config["trainer"]["devices"]
        assert config["threads"] == 1  # the launcher's cpus_per_task
        assert "threads=1: torch's CPU threads in each process" in (folder / "train.log").read_text()
    table, _ = sweep_table(collect(sweep))
    assert table in (sweep / "summary.md").read_text()  # written by the multirun's end callback
    first, second = steps_by_attempt(steps, "student")
    assert first == [1, 2, 3] and second == list(range(4, 17))  # resumed at step 4, mid-epoch: not from step 0
    log = (job / "train.log").read_text()
    assert "USR2 received: stopping after this training batch" in log
    assert f"Attempt 2 of this job: resuming distill from {job}/checkpoints/on_exception.ckpt" in log
    assert any("Requeued job" in p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))


@pytest.mark.slow  # 20 s: three attempts
def test_requeued_twice_still_one_run(assets, tmp_path):
    job, steps = interrupted(assets, tmp_path, "student:3,student:9")
    check_resumed(job, attempts=3)
    assert steps_by_attempt(steps, "student") == [[1, 2, 3], [4, 5, 6, 7, 8, 9], list(range(10, 17))]


@pytest.mark.slow  # 50 s: the teacher fine-tuned in the job, interrupted and not
def test_a_teachers_fine_tuning_inside_the_job_resumes(assets, tmp_path):
    """One job (two would race for the teacher): USR2 at step 2 of the teacher's 4; the requeued job takes the store's
    lock again and resumes the fine-tuning; teacher and student end as in the uninterrupted job."""
    whole = local_multirun(assets, tmp_path / "whole", {}, "1") / "0"
    job, steps = interrupted(assets, tmp_path / "stopped", "teacher:2", "1")
    assert steps_by_attempt(steps, "teacher") == [[1, 2], [3, 4]]
    assert json.loads((job / "metrics.json").read_text())["attempts"] == 2
    assert same_weights(job / "student", whole / "student") and files(job) == files(whole)
    (stored,) = (tmp_path / "stopped" / "teachers").glob("*/*/")
    (expected,) = (tmp_path / "whole" / "teachers").glob("*/*/")
    assert same_weights(stored, expected) and stored.name == expected.name
    assert not list((tmp_path / "stopped" / "teachers").rglob("*staging*"))


def test_in_process_the_marker_points_at_the_interruption_checkpoint(make_cfg, monkeypatch, tmp_path):
    """submitit's USR2 handler (a stand-in here) requeues after DKD saved; the next attempt in the same folder
    resumes from the marker and ends with the uninterrupted run's weights."""
    calls = []

    def submitit_handler(signum, frame):
        calls.append(signum)
        raise SystemExit(144)  # what submitit's local requeue exits with

    whole = make_cfg(SIGNAL_AT, *SMALL, "task.train_limit=16", "seed=3", out="whole")
    run(whole)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        cfg = make_cfg(SIGNAL_AT, *SMALL, "task.train_limit=16", "seed=3", out="job")
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
    assert not (out / requeue.MARKER).exists() and not (out / "checkpoints" / "on_exception.ckpt").exists()


def plain_sbatch_job(monkeypatch, tmp_path: Path, scontrol: str, job_id: str) -> None:
    """This process as SLURM job ``job_id`` started by sbatch, with a stand-in ``scontrol`` (a shell line) on the PATH,
    and sent USR1 after student step 2."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\n{scontrol}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", job_id)
    monkeypatch.setenv("SLURM_JOB_NAME", "distil.sbatch")
    monkeypatch.setenv("DKD_SIGNAL", "USR1")
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:2")


def test_a_plain_sbatch_job_requeues_itself_on_usr1(make_cfg, monkeypatch, tmp_path):
    """``#SBATCH --signal=USR1@120 --requeue`` around ``python train.py``: DKD saves, calls ``scontrol requeue`` and
    the requeued job (same SLURM job id, same run folder) resumes."""
    calls = tmp_path / "scontrol.txt"
    plain_sbatch_job(monkeypatch, tmp_path, f"echo \"$@\" >> {calls}", "4242")
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
    # offline, each attempt its own folder of the one W&B run: offline-run-<start second>-<run id>, and "-1" after
    # it when both attempts start in the same second
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.split("-")[3] for r in runs}) == 1


# ------------------------------------------------------------------------------------------------ in-process attempts
FAST = (*SMALL, "task.train_limit=16")  # 16 student steps


def attempt(cfg) -> int | None:
    """One attempt of the job in its folder: the exit code it stopped with, None when it finished."""
    try:
        run(cfg)
    except SystemExit as stop:
        return stop.code
    return None


def term_at(monkeypatch, where: str, **kwargs) -> None:
    """A SIGTERM to this process when ``dkd.run.<where>`` is called (``after=True``: once it returned)."""
    import dkd.run

    real = getattr(dkd.run, where)

    def signalled(*args, **kw):
        if kwargs.get("after"):
            value = real(*args, **kw)
            os.kill(os.getpid(), signal.SIGTERM)
            return value
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kw)

    monkeypatch.setattr(dkd.run, where, signalled)


def marker(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / requeue.MARKER).read_text())


def trained_steps(log: Path) -> list[int]:
    return [int(line.split()[2]) for line in log.read_text().splitlines() if line.split()[1] == "student"]


@pytest.fixture
def job(make_cfg, monkeypatch, tmp_path):
    """The job, its uninterrupted twin (dropout on) and the steps the twin trained; DKD_STEPS_LOG records each step
    trained."""
    monkeypatch.setenv("DKD_STEPS_LOG", str(tmp_path / "steps.txt"))
    whole = make_cfg(SIGNAL_AT, *FAST, "seed=3", out="whole")
    run(whole)
    steps = trained_steps(tmp_path / "steps.txt")
    (tmp_path / "steps.txt").unlink()
    assert steps == list(range(1, 17))  # 16 rows, batch 2, 2 epochs
    return make_cfg(SIGNAL_AT, *FAST, "seed=3", out="job"), whole


def same_as_whole(cfg, whole) -> None:
    out, ref = Path(cfg.paths.output_dir), Path(whole.paths.output_dir)
    assert same_weights(out / "student", ref / "student")
    dev = [json.loads((folder / "metrics.json").read_text())["dev"] for folder in (out, ref)]
    assert dev[0] == dev[1]
    assert not (out / requeue.MARKER).exists()


def test_a_plain_sigterm_outside_fit_saves_the_marker_and_exits_143(job, monkeypatch):
    """SIGTERM while the run reads its data, before any stage: the job saves its (empty) place, exits 143, and the next
    attempt runs it from its start."""
    cfg, whole = job
    term_at(monkeypatch, "check", after=True)
    assert attempt(cfg) == 128 + signal.SIGTERM
    assert marker(cfg)["stage"] is None and marker(cfg)["signal"] == "SIGTERM"
    monkeypatch.undo()
    assert attempt(cfg) is None
    same_as_whole(cfg, whole)


def test_a_stop_before_a_stage_keeps_the_place_the_attempt_started_from(job, monkeypatch, tmp_path):
    """Attempt 1 stops at step 5; attempt 2 is stopped before its distillation starts (it had no newer checkpoint);
    attempt 3 still resumes at step 6, not at step 1: each step is trained once."""
    cfg, whole = job
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    monkeypatch.setenv("DKD_SIGNAL", "TERM")
    assert attempt(cfg) == 128 + signal.SIGTERM
    first = marker(cfg)
    assert first["stage"] == "distill" and first["ckpt"].endswith("on_exception.ckpt")
    monkeypatch.delenv("DKD_SIGNAL_AT")
    term_at(monkeypatch, "check", after=True)
    assert attempt(cfg) == 128 + signal.SIGTERM
    second = marker(cfg)
    assert (second["attempt"], second["stage"], second["ckpt"]) == (2, "distill", first["ckpt"])
    monkeypatch.setattr("dkd.run.check", __import__("dkd.preflight", fromlist=["check"]).check)
    assert attempt(cfg) is None
    assert trained_steps(tmp_path / "steps.txt") == list(range(1, 17))  # 1-5, then 6-16: none twice
    same_as_whole(cfg, whole)
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["attempts"] == 3


def test_a_stop_during_the_export_resumes_at_the_evaluation_without_training(job, monkeypatch, tmp_path):
    """The fit ended, then SIGTERM while the student is exported: the next attempt trains no step, evaluates the same
    model and exports it."""
    cfg, whole = job
    term_at(monkeypatch, "plot_run")
    assert attempt(cfg) == 128 + signal.SIGTERM
    assert marker(cfg)["fit_ended"]["epoch"] == 1 and marker(cfg)["stage"] == "distill"
    monkeypatch.undo()
    before = len(trained_steps(tmp_path / "steps.txt"))
    assert attempt(cfg) is None
    assert len(trained_steps(tmp_path / "steps.txt")) == before == 16  # no step in the second attempt
    same_as_whole(cfg, whole)
    result = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    expected = json.loads((Path(whole.paths.output_dir) / "metrics.json").read_text())
    assert asked_flops(result["flops"]) == asked_flops(expected["flops"])  # the ended fit's count, kept


@pytest.mark.slow  # a path that held before; early stopping's validation stop runs by default
def test_a_stop_during_the_last_validation_resumes_without_training(job, monkeypatch, tmp_path):
    """SIGTERM while the last epoch is validated: the job stops after that validation; the next attempt trains no
    further step and ends with the same student."""
    cfg, whole = job
    import dkd.module

    real = dkd.module.ClassifierSystem.on_validation_epoch_end

    def last_validation(self):
        real(self)
        if self.trainer.current_epoch == 1 and not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(dkd.module.ClassifierSystem, "on_validation_epoch_end", last_validation)
    assert attempt(cfg) == 128 + signal.SIGTERM
    assert marker(cfg)["stage"] == "distill" and marker(cfg)["ckpt"]
    monkeypatch.undo()
    assert attempt(cfg) is None
    assert trained_steps(tmp_path / "steps.txt") == list(range(1, 17))
    same_as_whole(cfg, whole)


def test_early_stopping_is_not_undone_by_a_resume(make_cfg, monkeypatch, tmp_path):
    """Early stopping ends the fit after epoch 1 of 4 (no improvement of 1.0 is possible); a stop during the export
    and a resume train no epoch more, and keep the same student."""
    stopping = (*FAST[:2], "task.train_limit=16", "distill.epochs=4", "callbacks=[default,early_stopping]",
                "callbacks.early_stopping.min_delta=1.0", "callbacks.early_stopping.patience=1", "seed=3")
    whole = make_cfg(*stopping, out="whole")
    run(whole)
    assert json.loads((Path(whole.paths.output_dir) / "metrics.json").read_text())["selected"].startswith("checkpoint")
    cfg = make_cfg(*stopping, out="job")
    term_at(monkeypatch, "plot_run")
    assert attempt(cfg) == 128 + signal.SIGTERM
    assert marker(cfg)["fit_ended"]["epoch"] == 1
    monkeypatch.undo()
    assert attempt(cfg) is None
    out = Path(cfg.paths.output_dir)
    with open(out / "csv" / "metrics.csv", newline="") as fh:
        epochs = {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("train/loss")}
    assert epochs == {0, 1}  # stopped early, and not resumed into epoch 2
    same_as_whole(cfg, whole)


def test_a_marker_whose_checkpoint_is_gone_is_not_fatal(job, monkeypatch):
    """Attempt 1 stops at step 5; attempt 2 resumes, writes metrics.json, tidies the checkpoint attempt 1 left, and is
    killed before it clears the marker: attempt 3 finds a marker naming a checkpoint that is gone, and its results,
    and ends without training or failing."""
    cfg, whole = job
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    monkeypatch.setenv("DKD_SIGNAL", "TERM")
    assert attempt(cfg) == 128 + signal.SIGTERM
    monkeypatch.delenv("DKD_SIGNAL_AT")
    import dkd.run

    real = dkd.run.tidy_checkpoints

    def tidy_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit(137)  # the OOM killer, a lost node: no handler runs

    monkeypatch.setattr(dkd.run, "tidy_checkpoints", tidy_then_die)
    assert attempt(cfg) == 137
    stale = marker(cfg)
    assert stale["ckpt"] and not Path(stale["ckpt"]).exists() and (Path(cfg.paths.output_dir) / "metrics.json").exists()
    monkeypatch.setattr(dkd.run, "tidy_checkpoints", real)
    assert attempt(cfg) is None
    same_as_whole(cfg, whole)


def test_a_changed_config_is_refused_naming_the_keys(job, monkeypatch, make_cfg):
    cfg, _ = job
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    monkeypatch.setenv("DKD_SIGNAL", "TERM")
    assert attempt(cfg) == 128 + signal.SIGTERM
    monkeypatch.delenv("DKD_SIGNAL_AT")
    changed = make_cfg(SIGNAL_AT, *FAST, "seed=3", "distill.lr=5e-3", out="job")
    from dkd.errors import UserError

    with pytest.raises(UserError, match=r"config changed since attempt 1 .*distill\.lr: 0\.001 then, 0\.005 now"):
        run(changed)
    assert attempt(make_cfg(SIGNAL_AT, *FAST, "seed=3", "threads=1", out="job")) is None  # run-only keys may change


def test_a_stop_in_the_validation_where_early_stopping_decides_trains_no_more_epochs(make_cfg, monkeypatch):
    """Early stopping ends the fit at epoch 1's validation, and SIGTERM comes during that same validation: the fit
    is over, so the next attempt evaluates it and trains no epoch 2."""
    import dkd.module

    stopping = (*FAST[:2], "task.train_limit=16", "distill.epochs=4", "callbacks=[default,early_stopping]",
                "callbacks.early_stopping.min_delta=1.0", "callbacks.early_stopping.patience=1", "seed=3")
    whole = make_cfg(*stopping, out="whole")
    run(whole)
    cfg = make_cfg(*stopping, out="job")
    real = dkd.module.ClassifierSystem.on_validation_epoch_end

    def validation(self):
        real(self)
        if isinstance(self, dkd.module.DistillSystem) and self.trainer.current_epoch == 1 \
                and not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(dkd.module.ClassifierSystem, "on_validation_epoch_end", validation)
    assert attempt(cfg) == 128 + signal.SIGTERM
    assert marker(cfg)["fit_ended"]["epoch"] == 1
    monkeypatch.undo()
    assert attempt(cfg) is None
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv", newline="") as fh:
        assert {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("train/loss")} == {0, 1}
    same_as_whole(cfg, whole)


@pytest.mark.slow  # 8 s: three attempts; the stale-marker test covers the results-first order by default
def test_a_kill_during_the_model_card_redoes_what_follows_the_results_only(job, monkeypatch, tmp_path):
    """The results are written, then the job is killed while it writes the card (no handler runs): the marker is still
    there, so the requeued job writes the card and trains nothing."""
    import dkd.run

    cfg, whole = job
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    monkeypatch.setenv("DKD_SIGNAL", "TERM")
    assert attempt(cfg) == 128 + signal.SIGTERM
    monkeypatch.delenv("DKD_SIGNAL_AT")
    monkeypatch.setattr(dkd.run, "card", lambda *args: (_ for _ in ()).throw(SystemExit(137)))
    assert attempt(cfg) == 137
    out = Path(cfg.paths.output_dir)
    assert (out / "metrics.json").is_file() and (out / requeue.MARKER).is_file()
    before = len(trained_steps(tmp_path / "steps.txt"))
    monkeypatch.undo()
    assert attempt(cfg) is None
    assert len(trained_steps(tmp_path / "steps.txt")) == before and (out / "student" / "README.md").is_file()
    same_as_whole(cfg, whole)


@pytest.mark.slow  # 8 s: three runs
def test_results_of_another_config_in_the_folder_are_not_taken_for_this_jobs(job, monkeypatch, make_cfg):
    """A reused run folder holds an older run's metrics.json (another lr); this job, stopped and requeued, trains
    rather than report the old results."""
    cfg, _ = job
    old = make_cfg(SIGNAL_AT, *FAST, "seed=3", "distill.lr=5e-3", out="job")
    run(old)
    monkeypatch.setenv("DKD_SIGNAL_AT", "student:5")
    monkeypatch.setenv("DKD_SIGNAL", "TERM")
    assert attempt(cfg) == 128 + signal.SIGTERM
    monkeypatch.delenv("DKD_SIGNAL_AT")
    assert attempt(cfg) is None
    result = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert result["config"]["distill"]["lr"] == cfg.distill.lr and result["attempts"] == 2


def test_after_scontrol_requeue_the_schedulers_sigterm_is_not_a_new_stop(make_cfg, monkeypatch, tmp_path):
    """A plain sbatch job: USR1, DKD saves and runs `scontrol requeue`, whose SIGTERM then reaches the job: it is the
    same stop, not a new one (the job exits with USR1's code, its marker intact)."""
    plain_sbatch_job(monkeypatch, tmp_path, f"kill -TERM {os.getpid()}", "4243")
    cfg = make_cfg(SIGNAL_AT, *FAST, out="runs/slurm-4243")
    assert attempt(cfg) == 128 + signal.SIGUSR1
    assert marker(cfg)["signal"] == "SIGUSR1" and marker(cfg)["ckpt"].endswith("on_exception.ckpt")
