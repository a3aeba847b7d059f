"""Every input a run needs is checked before any training: one clear error, no fit, no teacher fine-tuned."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dkd.errors import UserError
from dkd.preflight import check
from dkd.run import run
from tests.conftest import ROOT, write_tsv


def custom_files(tmp_path: Path, bad_row: str | None = None, header: str = "text,label", at: int = 5,
                 encoding: str = "utf-8") -> list[str]:
    """A custom task's train and dev CSV files (``bad_row`` inserted as row ``at`` of train), and its options."""
    rows = [header] + [f"good plot {i},pos" if i % 2 else f"bad plot {i},neg" for i in range(12)]
    if bad_row:
        rows.insert(at, bad_row)
    (tmp_path / "train.csv").write_bytes("\n".join(rows).encode(encoding))
    (tmp_path / "dev.csv").write_bytes("\n".join(rows[:6]).encode(encoding))
    return ["task=custom", f"task.train_file={tmp_path / 'train.csv'}", f"task.dev_file={tmp_path / 'dev.csv'}",
            "task.labels=[neg,pos]"]


BAD = {
    "student path": (["backbone.student.name_or_path=/nonexistent/model"],
                     r"backbone.student.name_or_path=/nonexistent/model: .*Model folder /nonexistent/model does not"),
    "teacher path": (["backbone.teachers.base=/nonexistent/teacher"], r"backbone.teachers.base=/nonexistent/teacher"),
    "large teacher path": (["teacher=large", "backbone.teachers.large=./nope"], r"backbone.teachers.large=./nope"),
    "student layers": (["backbone.student.layers=[0,9]"],
                       r"backbone.student.layers=\[0, 9\]: the model has blocks 0..3"),
    "data folder": (["task.data_dir=/nonexistent/SST-2"], r"no local data .*/nonexistent/SST-2 does not exist"),
    "number": (["distill.lr=-1"], r"distill.lr=-1: must be a number > 0"),
    "limit": (["task.train_limit=0"], r"task.train_limit=0: must be an integer >= 1, or null"),
    "subset size": (["distill.train_limit=100000"], r"distill.train_limit=100000 is more than the \d+ training rows"),
    "threads": (["threads=0"], r"threads=0: must be an integer >= 1, or null"),
    "adamw": (["finetune.adamw=fast"], r"finetune.adamw='fast': must be one of \['auto', 'foreach', 'fused'\]"),
    "trainer key": (["+trainer.max_epoch=3"], r"trainer options: .*unexpected keyword argument 'max_epoch'"),
    "gpu": (["trainer.accelerator=gpu"], r"trainer options: No supported gpu backend found"),
    "callback": (["+callbacks.es._target_=pytorch_lightning.callbacks.EarlyStoping"], r"callbacks.es: "),
    "sampler override": (["+trainer.use_distributed_sampler=true"], r"trainer.use_distributed_sampler: DKD shards"),
    "max length": (["data.max_seq_length=512"], r"data.max_seq_length=512: .* takes at most 128 tokens"),
    "resume file": (["ckpt_path=/nonexistent/last.ckpt"], r"ckpt_path=/nonexistent/last.ckpt: no such checkpoint"),
    "metric": (["optimized_metric=dev/f1"], r"optimized_metric=dev/f1: task sst2 reports \['dev/score', 'dev/acc'\]"),
    "unused teacher dir": (["teacher.dirs.large=/x"], r"teacher.dirs.large is set, but this run's teachers are"),
    "given teacher": (["teacher.dirs.base=/nonexistent/t"], r"teacher.dirs.base=/nonexistent/t: .*does not exist"),
    "objective": (["objective.loss=kll"], r"objective.loss='kll': choose one of \['kl', 'mse'\]"),
    "strategy combination": (["teacher=both"], r"adoption=single takes one teacher"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_fails_before_any_training(make_cfg, no_fit, name):
    overrides, message = BAD[name]
    cfg = make_cfg("task=sst2", *overrides)
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert not no_fit and not Path(cfg.paths.teachers_dir).exists()


@pytest.mark.parametrize("name, bad_row, header, message", [
    ("label", "fine plot,maybe", "text,label", r"train.csv: row 5, column 'label' has label 'maybe'"),
    ("column", None, "sentence,label", r"train.csv: no column 'text' \(columns are \['sentence', 'label'\]\)"),
])
def test_bad_data_file_fails_before_any_training(make_cfg, no_fit, tmp_path, name, bad_row, header, message):
    cfg = make_cfg(*custom_files(tmp_path, bad_row, header))
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert not no_fit


def test_empty_dev_split_fails_before_any_training(make_cfg, no_fit, tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"], [["good", 1]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["sentence", "label"], [])
    with pytest.raises(UserError, match=r"dev.tsv: the split is empty"):
        run(make_cfg("task=sst2", f"task.data_dir={tmp_path / 'SST-2'}"))
    assert not no_fit


def test_given_teacher_must_be_a_fine_tuned_classifier(make_cfg, no_fit, assets):
    with pytest.raises(UserError, match=r"teacher.dirs.base=.*tiny-teacher: Model .* is not a fine-tuned classifier"):
        run(make_cfg("task=sst2", f"teacher.dirs.base={assets['teacher']}"))
    assert not no_fit


def test_cli_fails_within_seconds_with_one_line(assets, tmp_path):
    """The issue's case: a fresh checkout (no teacher stored) and a wrong student path."""
    start = time.time()
    out = subprocess.run(
        [sys.executable, "train.py", "backbone.student.name_or_path=/nonexistent/model", f"paths.log_dir={tmp_path}",
         f"paths.glue_dir={assets['glue']}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.time() - start
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        out.stderr.strip().splitlines()[0]] and out.stderr.startswith("error: backbone.student.name_or_path=")
    assert "fine-tuning" not in out.stdout + out.stderr and not (tmp_path / "teachers").exists()
    assert elapsed < 30, elapsed  # imports (~4 s) dominate; no model or data is loaded beyond configs and files


def test_hub_model_offline_fails_at_once_not_after_retries(make_cfg, no_fit, monkeypatch):
    """backbone=bert names hub ids; with the hub unreachable the check fails in a second (the libraries alone retry
    for about 25 s), and copies in the local Hugging Face cache would still load."""
    import socket

    from dkd import hub

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    hub.hub_reachable.cache_clear()
    start = time.time()
    not_found = r"backbone.teachers.base=bert-base-uncased: Could not load 'bert-base-uncased'"
    with pytest.raises(UserError, match=not_found):
        run(make_cfg("task=sst2", "backbone.teachers.base=bert-base-uncased"))
    assert time.time() - start < 5 and not no_fit
    hub.hub_reachable.cache_clear()


def test_resume_checkpoint_must_hold_this_stages_model(make_cfg, monkeypatch):
    """A teacher's interruption checkpoint cannot resume a distillation: the error says how to resume it."""
    from dkd import run as run_module

    cfg = make_cfg("task=sst2", "+callbacks.stop._target_=tests.conftest.InterruptAt", "+callbacks.stop.step=2")
    with pytest.raises(RuntimeError, match="interrupted at step 2"):
        run(cfg)
    (ckpt,) = Path(cfg.paths.output_dir).glob("teacher-base/checkpoints/on_exception.ckpt")
    hints = run_module.resume_hints(cfg, since=0)
    assert hints == [f"Resume the teacher's fine-tuning with the same options plus stage=teacher teacher=base "
                     f"ckpt_path={ckpt}, then run again to distil"]
    monkeypatch.setattr(run_module.pl.Trainer, "fit", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(UserError, match=r"holds the base teacher's training, but this run trains the student: resume "
                                        r"it with stage=teacher teacher=base"):
        run(make_cfg("task=sst2", f"ckpt_path={ckpt}"))
    with pytest.raises(UserError, match=r"holds the base teacher's training, but this run trains the large teacher"):
        run(make_cfg("task=sst2", "stage=teacher", "teacher=large", f"ckpt_path={ckpt}"))
    with pytest.raises(UserError, match=r"ckpt_path resumes one model: with stage=teacher pick"):
        run(make_cfg("task=sst2", "stage=teacher", "teacher=both", f"ckpt_path={ckpt}"))


def test_a_weights_only_checkpoint_is_refused_as_a_resume_point(make_cfg, no_fit, tmp_path):
    import torch

    best = tmp_path / "epoch1-score0.8.ckpt"  # what model_checkpoint keeps: no optimizer state
    torch.save({"hyper_parameters": {"role": "student"}, "state_dict": {}}, best)
    with pytest.raises(UserError, match="holds the model's weights only.*last.ckpt.*keep_last_ckpt=true"):
        run(make_cfg(f"ckpt_path={best}"))


# A row of a spreadsheet export: é and è exist in latin-1 and cp1252; the dash and curly quotes (bytes 0x93, 0x94,
# 0x97) only in cp1252, so a cp1252 file holds bytes 0x80-0x9F and a latin-1 one does not.
ROW = {"latin-1": "Café crème - a great film,pos", "cp1252": "Café crème — a “great” film,pos"}


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_file_in_another_encoding_names_its_fault_and_runs_with_task_encoding(make_cfg, no_fit, tmp_path, encoding):
    """The error names the file, the byte offset and line of the first byte that is not UTF-8, the encoding tried,
    the likely one and the option; with that option the run reads the text as written."""
    from dkd.preflight import check

    files = custom_files(tmp_path, ROW[encoding], at=9, encoding=encoding)
    offset = (tmp_path / "train.csv").read_bytes().index("é".encode(encoding))
    with pytest.raises(UserError) as err:
        check(make_cfg(*files))
    assert str(err.value).startswith(f"{tmp_path / 'train.csv'} is not utf-8 text: byte {offset} (0xe9, line 10, ")
    assert f"It looks like {encoding}: set task.encoding={encoding} (Western European text;" in str(err.value)
    assert "Expected a" not in str(err.value)  # not the old advice about the file's layout
    plan = check(make_cfg(*files, f"task.encoding={encoding}"))
    assert ROW[encoding].removesuffix(",pos") in plan.splits["train"].texts[0]
    assert not no_fit


def test_glue_layout_files_take_task_encoding_too(make_cfg, tmp_path):
    from dkd.preflight import check

    rows = [["Café crème", 1], ["plain", 0]]
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "SST-2").mkdir(exist_ok=True)
        (tmp_path / "SST-2" / name).write_bytes(
            ("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)).encode("latin-1"))
    with pytest.raises(UserError, match=r"SST-2/train.tsv is not utf-8 text: byte 18 \(0xe9, line 2, in \"Caf\\xe9 "):
        check(make_cfg(f"task.data_dir={tmp_path / 'SST-2'}"))
    plan = check(make_cfg(f"task.data_dir={tmp_path / 'SST-2'}", "task.encoding=latin-1"))
    assert plan.splits["dev"].texts[0] == ["Café crème", "plain"]


def test_an_unknown_encoding_is_refused_by_name(make_cfg):
    from dkd.preflight import check

    with pytest.raises(UserError, match=r"task.encoding=latin-9x: Python knows no such encoding.*latin-1, cp1252"):
        check(make_cfg("task.encoding=latin-9x"))


def test_a_single_byte_encoding_on_a_utf8_file_is_warned_about(make_cfg, tmp_path, caplog):
    from dkd.preflight import check

    (tmp_path / "train.csv").write_text("text,label\nCafé,pos\nplain,neg\n")
    (tmp_path / "dev.csv").write_text("text,label\nplain,neg\n")
    check(make_cfg("task=custom", f"task.train_file={tmp_path / 'train.csv'}", f"task.dev_file={tmp_path / 'dev.csv'}",
                   "task.labels=[neg,pos]", "task.encoding=cp1252"))
    assert f"{tmp_path / 'train.csv'} is valid UTF-8, but task.encoding=cp1252" in caplog.text


def test_utf16_without_a_byte_order_mark_is_named_not_read_as_nul_riddled_text(make_cfg, tmp_path):
    from dkd.preflight import check

    for name in ("train.csv", "dev.csv"):
        (tmp_path / name).write_bytes("text,label\nplain,neg\ngood,pos\n".encode("utf-16-le"))
    files = ["task=custom", f"task.train_file={tmp_path / 'train.csv'}", f"task.dev_file={tmp_path / 'dev.csv'}",
             "task.labels=[neg,pos]"]
    with pytest.raises(UserError, match=r"train.csv holds NUL bytes .* set task.encoding=utf-16-le\.$"):
        check(make_cfg(*files))
    assert check(make_cfg(*files, "task.encoding=utf-16-le")).splits["train"].texts[0] == ["plain", "good"]


def test_a_file_that_mixes_utf8_and_latin1_is_said_to_mix_them(make_cfg, tmp_path):
    from dkd.preflight import check

    (tmp_path / "train.csv").write_bytes("text,label\nnaïve,pos\n".encode() + "Café,neg\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"line 3.* the file mixes encodings: no single task.encoding reads it right"):
        check(make_cfg("task=custom", f"task.train_file={tmp_path / 'train.csv'}",
                       f"task.dev_file={tmp_path / 'train.csv'}", "task.labels=[neg,pos]"))


def test_a_numeric_encoding_name_is_taken_as_its_name(make_cfg, tmp_path):
    from dkd.preflight import check

    files = custom_files(tmp_path, ROW["cp1252"], at=9, encoding="cp1252")
    assert "Café crème — a “great” film" in check(make_cfg(*files, "task.encoding=1252")).splits["train"].texts[0]


def test_bf16_on_a_cpu_without_bf16_instructions_is_said_in_one_line(make_cfg, monkeypatch, caplog):
    """Simulated: a CPU whose oneDNN has no bf16 gets one warning naming the faster setting; the run is not refused.
    With bf16 instructions, or in fp32, nothing is said."""
    import dkd.preflight

    for native, precision, said in ((False, "bf16-mixed", True), (True, "bf16-mixed", False), (False, "32", False)):
        monkeypatch.setattr(dkd.preflight, "native_bf16", lambda native=native: native)
        caplog.clear()
        with caplog.at_level("WARNING", logger="dkd.preflight"):
            check(make_cfg("task=sst2", f"trainer.precision={precision}"))
        lines = [r.getMessage() for r in caplog.records if "bf16 instructions" in r.getMessage()]
        assert len(lines) == int(said), (native, precision, lines)
        if said:
            assert "trainer.precision=32 is faster here" in lines[0]


def test_bf16_with_uncertainty_selection_is_said_in_one_line(make_cfg, caplog):
    """bf16 lost accuracy with entropy selection (docs/results.md): a run that ranks rows by uncertainty under bf16
    hears it once; full KD, random selection and fp32 runs hear nothing."""
    for overrides, said in ((("sampler=entropy", "trainer.precision=bf16-mixed"), True),
                            (("sampler=margin", "trainer.precision=bf16-mixed"), True),
                            (("sampler=random", "trainer.precision=bf16-mixed"), False),
                            (("trainer.precision=bf16-mixed",), False), (("sampler=entropy",), False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="dkd.preflight"):
            check(make_cfg("task=sst2", *overrides))
        lines = [r.getMessage() for r in caplog.records if "bf16 scoring" in r.getMessage()]
        assert len(lines) == int(said), (overrides, lines)
