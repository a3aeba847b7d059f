"""The teacher store: keyed by recipe, reused across seeds, written atomically, built once under a lock."""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl

from dkd.errors import UserError
from dkd.preflight import check
from dkd.run import run
from dkd.teachers import main as list_teachers
from tests.conftest import ROOT, make_tiny_model


def teacher_dir(cfg) -> str:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["teachers"]["base"]["dir"]


def fine_tuned_here(cfg) -> bool:
    return (Path(cfg.paths.output_dir) / "teacher-base").exists()


def custom(tmp_path: Path, name: str, flip: bool) -> list[str]:
    folder = tmp_path / name
    folder.mkdir()
    rows = ["text,label"] + [f"good plot {i},{'neg' if flip else 'pos'}" if i % 2 else f"bad plot {i},neg"
                             for i in range(16)]
    (folder / "train.csv").write_text("\n".join(rows))
    (folder / "dev.csv").write_text("\n".join(rows[:7]))
    return ["task=custom", f"task.train_file={folder / 'train.csv'}", f"task.dev_file={folder / 'dev.csv'}",
            "task.labels=[neg,pos]"]


def test_two_custom_datasets_get_two_teachers(make_cfg, tmp_path):
    first = make_cfg(*custom(tmp_path, "a", flip=False), out="a")
    second = make_cfg(*custom(tmp_path, "b", flip=True), out="b")
    run(first)
    run(second)
    assert fine_tuned_here(first) and fine_tuned_here(second)
    assert teacher_dir(first) != teacher_dir(second)
    assert len(list((tmp_path / "teachers" / "custom").glob("tiny-teacher-*"))) == 2


def test_a_changed_subset_gets_a_new_teacher_and_another_seed_reuses_it(make_cfg, caplog):
    caplog.set_level(logging.INFO, logger="dkd")
    first = make_cfg("task=sst2", "task.train_limit=20", out="first")
    run(first)
    reseeded = make_cfg("task=sst2", "task.train_limit=20", "seed=7", out="reseeded")
    run(reseeded)
    assert not fine_tuned_here(reseeded) and teacher_dir(reseeded) == teacher_dir(first)
    caplog.clear()
    more = make_cfg("task=sst2", "task.train_limit=30", out="more")
    run(more)
    assert fine_tuned_here(more) and teacher_dir(more) != teacher_dir(first)
    assert f"stored {teacher_dir(first)} differs in data" in caplog.text  # and says why the old one was not used


@pytest.mark.parametrize("change", [
    "finetune.lr=5e-4", "data.max_seq_length=64", "finetune.batch_size=4", "trainer.precision=bf16-mixed",
    "callbacks=[default,early_stopping]", "task.dev_limit=8", "+trainer.max_steps=10",
    "trainer.limit_val_batches=0.5", "trainer.enable_checkpointing=false", "callbacks.model_checkpoint.mode=min",
    "+callbacks.swa._target_=pytorch_lightning.callbacks.StochasticWeightAveraging +callbacks.swa.swa_lrs=1e-4",
    "finetune.seed=1", "finetune.warmup_rounding=ceil", "finetune.adamw=auto",
])
def test_recipe_changes_move_the_teacher(make_cfg, change):
    base = check(make_cfg("task=sst2")).teachers["base"]
    changed = check(make_cfg("task=sst2", *change.split())).teachers["base"]
    assert changed.folder != base.folder and changed.folder.parent == base.folder.parent


@pytest.mark.parametrize("change", ["trainer.log_every_n_steps=50", "callbacks.progress_bar.refresh_rate=100",
                                    "~callbacks.lr_monitor", "trainer=cpu", "callbacks.model_checkpoint.filename=x",
                                    "trainer.enable_progress_bar=true",
                                    "~trainer.num_nodes"])  # Lightning's default: teachers stored before the key
def test_settings_that_only_report_keep_the_teacher(make_cfg, change):
    assert check(make_cfg("task=sst2", change)).teachers["base"].folder == check(make_cfg("task=sst2")
                                                                                 ).teachers["base"].folder


def test_same_recipe_same_folder_whatever_the_seed_or_student(make_cfg):
    base = check(make_cfg("task=sst2")).teachers["base"].folder
    assert check(make_cfg("task=sst2", "seed=3", "distill.lr=1e-4", "backbone.student.layers=1")
                 ).teachers["base"].folder == base


def test_a_teacher_stored_before_its_seed_was_a_key_keeps_its_folder(make_cfg):
    """finetune.seed, finetune.warmup_rounding and finetune.adamw at the values teachers were fine-tuned with before
    the keys existed are left out of the key: the digest of a recipe without them, as stored teachers' recipes were
    written, gives the same folder."""
    import hashlib

    from dkd.teachers import recipe_key

    r = check(make_cfg("task=sst2", "finetune.adamw=auto")).teachers["base"].recipe
    assert r["finetune"]["seed"] == 42 and r["finetune"]["warmup_rounding"] == "floor"  # the recipe names them
    assert r["finetune"]["adamw"] == "auto"
    before = {k: v for k, v in r.items() if k != "model"}
    before["finetune"] = {k: v for k, v in r["finetune"].items() if k not in ("seed", "warmup_rounding", "adamw")}
    assert recipe_key(r) == hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()[:12]


def test_a_sweep_over_seeds_stores_one_teacher_at_its_own_seed(make_cfg, caplog):
    """The job's seed varies the student; the teacher is fine-tuned at finetune.seed, whichever job comes first."""
    second = None
    for seed in (2, 1):
        cfg = make_cfg("task=sst2", "task.train_limit=20", f"seed={seed}", out=f"seed{seed}")
        run(cfg)
        second = second or teacher_dir(cfg)
        assert teacher_dir(cfg) == second
    stored = Path(second)
    assert json.loads((stored / "recipe.json").read_text())["finetune"]["seed"] == 42
    assert json.loads((stored / "metrics.json").read_text())["seed"] == 42


def test_a_stored_teacher_of_another_seed_is_refused_before_any_work(make_cfg):
    """A teacher stored before finetune.seed existed, by a job of seed 1, sits in the key of finetune.seed=42."""
    first = make_cfg("task=sst2", "task.train_limit=20", out="first")
    run(first)
    metrics = Path(teacher_dir(first)) / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "seed": 1}))
    with pytest.raises(UserError, match=r"fine-tuned under seed 1 .* finetune.seed=42\. Delete that folder"):
        check(make_cfg("task=sst2", "task.train_limit=20", out="again"))


def test_model_files_are_part_of_the_key(make_cfg, tmp_path):
    a = make_tiny_model(tmp_path / "same-name")
    first = check(make_cfg("task=sst2", f"backbone.teachers.base={a}")).teachers["base"].folder
    make_tiny_model(tmp_path / "same-name", layers=2)  # overwritten with another model
    assert check(make_cfg("task=sst2", f"backbone.teachers.base={a}")).teachers["base"].folder != first


def test_given_teacher_folder_is_used_as_is(make_cfg, capsys):
    stored = make_cfg("task=sst2", "stage=teacher", out="teacher")
    run(stored)
    folder = next((Path(stored.paths.teachers_dir) / "sst2").glob("tiny-teacher-*"))
    given = make_cfg("task=sst2", "finetune.lr=1e-2", f"teacher.dirs.base={folder}", out="given")  # another recipe
    run(given)
    assert not fine_tuned_here(given) and teacher_dir(given) == str(folder)
    list_teachers([stored.paths.teachers_dir])
    assert str(folder) in capsys.readouterr().out


def test_given_teacher_of_another_task_is_refused(make_cfg, monkeypatch):
    run(make_cfg("task=rte", "stage=teacher", out="rte"))
    folder = next(p for p in (Path(make_cfg().paths.teachers_dir) / "rte").iterdir() if not p.name.startswith("."))
    monkeypatch.setattr(pl.Trainer, "fit", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(UserError, match=r"teacher.dirs.base=.* was fine-tuned on rte, not sst2"):
        run(make_cfg("task=sst2", f"teacher.dirs.base={folder}"))
    (folder / "recipe.json").unlink()  # a folder from elsewhere: its label names tell
    with pytest.raises(UserError, match=r"predicts the labels \['entailment', 'not_entailment'\], but task sst2"):
        run(make_cfg("task=sst2", f"teacher.dirs.base={folder}"))


def test_an_incomplete_folder_is_moved_aside_not_loaded(make_cfg, caplog):
    caplog.set_level(logging.INFO, logger="dkd")
    cfg = make_cfg("task=sst2")
    folder = check(cfg).teachers["base"].folder
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # copied in half, say
    run(cfg)
    assert (folder / "recipe.json").is_file() and "moved aside" in caplog.text
    assert len(list(folder.parent.glob(f".{folder.name}.incomplete-*"))) == 1


def test_stage_teacher_does_not_fine_tune_a_stored_teacher_again(make_cfg, caplog):
    caplog.set_level(logging.INFO, logger="dkd")
    run(make_cfg("task=sst2", "stage=teacher", out="first"))
    again = make_cfg("task=sst2", "stage=teacher", out="again")
    run(again)
    assert not fine_tuned_here(again) and "already stored" in caplog.text


# ------------------------------------------------------------------------------------------- two processes
def cli_args(assets, tmp_path, out: str | None = None) -> list[str]:
    return [
        "train.py", f"paths.glue_dir={assets['glue']}", f"paths.log_dir={tmp_path}",
        *([f"hydra.run.dir={tmp_path / out}"] if out else []),
        f"backbone.teachers.base={assets['teacher']}", f"backbone.student.name_or_path={assets['student']}",
        "backbone.student.layers=2", "task.train_limit=24", "finetune.epochs=1", "distill.epochs=1",
        "finetune.batch_size=8", "finetune.lr=1e-3", "trainer.enable_progress_bar=false", "compress.enabled=false",
        "logger=none",
    ]  # the teacher recipe of make_cfg("task=sst2", "task.train_limit=24")


def start(args: list[str], log: Path, prelude: str = "") -> subprocess.Popen:
    code = f"{prelude}\nimport runpy, sys\nsys.argv = {args!r}\nrunpy.run_path('train.py', run_name='__main__')"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(text: str, logs: list[Path], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not all(text in log.read_text() for log in logs):
        assert time.time() < deadline, [log.read_text()[-2000:] for log in logs]
        time.sleep(0.2)


@pytest.mark.slow  # 10 s: two processes; the killed-mid-save test below covers the store across processes by default
def test_concurrent_runs_fine_tune_a_missing_teacher_once(make_cfg, assets, tmp_path):
    """The test holds the teacher's lock while two runs start, so that both find it missing and wait; released,
    one fine-tunes and the other reuses its teacher."""
    from filelock import FileLock

    cfg = make_cfg("task=sst2", "task.train_limit=24")
    folder = check(cfg).teachers["base"].folder
    lock = FileLock(folder.with_name(f".{folder.name}.lock"))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with lock:
        runs = [start(cli_args(assets, tmp_path), log) for log in logs]  # started together: two run folders
        wait_for("waiting for it", logs)
    codes = [r.wait(timeout=300) for r in runs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], [t[-3000:] for t in texts]
    outs = sorted((tmp_path / "runs").iterdir())
    assert len(outs) == 2
    assert sorted((out / "teacher-base").exists() for out in outs) == [False, True]  # fine-tuned once
    assert sum("stored meanwhile by another run" in t for t in texts) == 1
    dirs = {json.loads((out / "metrics.json").read_text())["teachers"]["base"]["dir"] for out in outs}
    assert dirs == {str(folder)}


def test_a_run_killed_mid_save_leaves_nothing_a_later_run_loads(make_cfg, assets, tmp_path):
    """The first run is killed (SIGKILL) after the teacher's weights are written, before it is published."""
    cfg = make_cfg("task=sst2", "task.train_limit=24")
    folder = check(cfg).teachers["base"].folder
    kill = ("import os, signal, dkd.teachers as t; "
            "t.TeacherStore.publish = staticmethod(lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))")
    killed = start(cli_args(assets, tmp_path, "killed"), tmp_path / "killed.log", prelude=kill)
    assert killed.wait(timeout=300) == -signal.SIGKILL
    (staging,) = folder.parent.glob(f".{folder.name}.staging-*")
    assert (staging / "config.json").is_file() and not folder.exists()  # weights written, nothing published
    assert not check(cfg).teachers["base"].ready
    run(make_cfg("task=sst2", "task.train_limit=24", "stage=teacher", out="again"))  # in this process: its store
    assert (tmp_path / "again" / "teacher-base").exists() and (folder / "recipe.json").is_file()
    assert not staging.exists()  # the leftover was cleaned under the lock
