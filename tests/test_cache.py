"""Teacher-output cache: hits skip the teacher and change no loss; the disk entry is shared across runs and keyed by
the teacher, its tokens and the precision."""
import csv
import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from dkd.cache import FORMAT, OutputStore, TeacherOutputs, entries, main, resolve_mode, teacher_outputs
from dkd.errors import UserError
from dkd.run import run

LOGITS = {"logits": (2,)}


def tiny_teacher(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config).eval()


def batch(idx: list[int]) -> dict:
    ids = torch.tensor([[2, 5 + i % 7, 6 + i % 5, 3] for i in idx])
    return {"idx": torch.tensor(idx), "labels": torch.zeros(len(idx), dtype=torch.long),
            "inputs": {"base": {"input_ids": ids, "attention_mask": torch.ones_like(ids)}}}


class RowCounter:
    def __init__(self, model):
        self.rows = 0
        model.register_forward_hook(lambda m, args, kwargs, out: self.add(kwargs["input_ids"]), with_kwargs=True)

    def add(self, ids):
        self.rows += ids.size(0)


def test_mode_resolution():
    assert resolve_mode("auto", teacher_dropout=False) == "disk"
    assert resolve_mode("auto", teacher_dropout=True) == "off"
    with pytest.raises(UserError, match="distill.teacher_cache=disk with distill.teacher_dropout=true"):
        resolve_mode("disk", teacher_dropout=True)
    with pytest.raises(UserError, match=r"distill.teacher_cache='dsk': choose one of"):
        resolve_mode("dsk", teacher_dropout=False)


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_hits_skip_the_teacher_and_give_the_same_logits(tmp_path, kind):
    teacher = tiny_teacher()
    counter = RowCounter(teacher)
    store = (OutputStore.in_memory(10, LOGITS) if kind == "memory"
             else OutputStore.open_disk(tmp_path / "entry", {"k": 1}, 10, LOGITS))
    cached, plain = TeacherOutputs(teacher, "base", store), TeacherOutputs(teacher, "base")
    first = cached(batch([0, 3, 4]))["logits"]
    cached.commit()  # the step is done
    assert counter.rows == 3 and (cached.hits, cached.misses) == (0, 3)
    again = cached(batch([4, 7, 0]))  # 4 and 0 are stored: only row 7 reaches the teacher
    cached.start_batch()  # the same batch redone after an interruption: counted once
    again = cached(batch([4, 7, 0]))["logits"]
    cached.commit()
    assert counter.rows == 4 and (cached.hits, cached.misses) == (3, 3)
    assert torch.equal(again[[0, 2]], first[[2, 0]])
    assert torch.allclose(again, plain(batch([4, 7, 0]))["logits"], atol=1e-6)
    assert cached.drain_requests() == [(3, 4)] * 3 and cached.requests == []


def padded(rows: list[list[int]], idx: list[int]) -> dict:
    """A batch of ``rows`` (token ids) right-padded with 0 to the longest."""
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    return {"idx": torch.tensor(idx), "labels": torch.zeros(len(idx), dtype=torch.long),
            "inputs": {"base": {"input_ids": ids, "attention_mask": (ids != 0).long(),
                                "token_type_ids": torch.zeros_like(ids)}}}


def test_a_stored_row_is_computed_alone_whatever_batch_asked_first():
    """Each missing row runs through the teacher alone at its own length, so two cache histories store the same
    values to the bit; off the cache the batch runs as it is."""
    rows = [[2, 5, 3], [2, 6, 7, 8, 9, 3], [2, 4, 9, 11, 3]]
    teacher = tiny_teacher()
    shapes = []
    teacher.register_forward_hook(lambda m, a, kw, out: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    one = TeacherOutputs(teacher, "base", OutputStore.in_memory(3, LOGITS))
    first = one(padded(rows, [0, 1, 2]))["logits"]
    assert shapes == [(1, 3), (1, 6), (1, 5)]  # no padding reaches the teacher
    other = TeacherOutputs(teacher, "base", OutputStore.in_memory(3, LOGITS))
    other(padded(rows[2:], [2])), other(padded(rows[:2], [0, 1]))  # another history, other widths
    assert torch.equal(other.store.arrays["logits"], one.store.arrays["logits"])
    for i, r in enumerate(rows):
        alone = teacher(input_ids=torch.tensor([r]), attention_mask=torch.ones(1, len(r), dtype=torch.long),
                        token_type_ids=torch.zeros(1, len(r), dtype=torch.long)).logits[0]
        assert torch.equal(first[i], alone)
    shapes.clear()
    TeacherOutputs(teacher, "base")(padded(rows, [0, 1, 2]))
    assert shapes == [(3, 6)]


def test_disk_entry_is_shared_and_checked(tmp_path):
    teacher = tiny_teacher()
    one = TeacherOutputs(teacher, "base", OutputStore.open_disk(tmp_path / "e", {"k": 1}, 10, LOGITS))
    expected = one(batch([1, 2]))["logits"]
    one.store.flush()
    counter = RowCounter(teacher)
    two = TeacherOutputs(teacher, "base", OutputStore.open_disk(tmp_path / "e", {"k": 1}, 10, LOGITS))  # another run
    assert torch.equal(two(batch([2, 1]))["logits"], expected.flip(0)) and counter.rows == 0
    with pytest.raises(UserError, match=r"holds \{'logits': \(10, 2\)\}, this run needs \{'logits': \(12, 2\)\}: "
                                        r"delete the folder"):
        OutputStore.open_disk(tmp_path / "e", {"k": 1}, 12, LOGITS)


def test_a_disk_store_travels_as_its_folder(tmp_path):
    import pickle

    store = OutputStore.open_disk(tmp_path / "e", {"k": 1}, 4, LOGITS)
    copy = pickle.loads(pickle.dumps(store))  # as ddp_spawn sends the system to its workers
    copy.write(torch.tensor([1]), {"logits": torch.tensor([[0.5, -0.5]])})
    filled, outputs = store.lookup(torch.tensor([1, 2]))
    assert filled.tolist() == [True, False] and outputs["logits"][0].tolist() == [0.5, -0.5]
    memory = pickle.loads(pickle.dumps(OutputStore.in_memory(4, LOGITS)))
    assert memory.folder is None and memory.arrays["logits"].shape == (4, 2)


def test_key_holds_teacher_tokens_and_precision(tmp_path, assets):
    from dkd.models import load_classifier

    teachers = {"base": load_classifier(str(assets["teacher"]), 2)}
    dirs = {"base": str(assets["teacher"])}
    tokens = {"base": {"input_ids": [[2, 5, 3], [2, 6, 7, 3]]}}
    folder = lambda enc, precision="32-true", d=dirs: teacher_outputs(  # noqa: E731
        "disk", teachers, d, enc, str(tmp_path), precision)["base"].store.folder
    same = folder(tokens)
    assert folder(tokens) == same
    assert folder({"base": {"input_ids": [[2, 5, 3], [2, 6, 3]]}}) != same  # e.g. a shorter max_seq_length
    assert folder(tokens, "bf16-mixed") != same
    assert folder(tokens, d={"base": str(assets["large"])}) != same  # other weights
    assert len(entries(tmp_path)) == 4
    assert teacher_outputs("memory", teachers, dirs, tokens, str(tmp_path), "32")["base"].store.folder is None
    assert teacher_outputs("off", teachers, dirs, tokens, str(tmp_path), "32")["base"].store is None



def test_listing_marks_entries_of_another_format_and_clear_stale_deletes_only_them(tmp_path, capsys):
    root = tmp_path / "teacher-outputs"
    for name, fmt in (("old", FORMAT - 1), ("new", FORMAT)):
        OutputStore.open_disk(root / name, {"format": fmt, "model": name}, 3, LOGITS)
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count("never reads it") == 1 and f"format {FORMAT - 1}: this code" in out
    assert [e["format"] for e in entries(tmp_path)] == [FORMAT, FORMAT - 1]  # sorted by folder: new, old
    with pytest.raises(SystemExit):  # --stale alone would look like it deleted something
        main([str(tmp_path), "--stale"])
    main([str(tmp_path), "--clear", "--stale"])
    assert [e["model"] for e in entries(tmp_path)] == ["new"]

def logged(cfg) -> list[dict]:
    return list(csv.DictReader(open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")))


def result(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_second_run_reads_every_teacher_output_from_disk(make_cfg, tmp_path, capsys):
    """Static KD twice with the disk cache, then once without: the second run runs no teacher forward, and all three
    train the same student (same losses step by step)."""
    first = make_cfg("task=sst2", out="first")
    run(first)
    teacher = f"teacher.dirs.base={result(first)['teachers']['base']['dir']}"
    second = make_cfg("task=sst2", teacher, out="second")
    run(second)
    off = make_cfg("task=sst2", teacher, "distill.teacher_cache=off", out="off")
    run(off)
    c1, c2 = result(first)["teacher_cache"]["base"], result(second)["teacher_cache"]["base"]
    assert (c1["hits"], c1["misses"], c1["mode"]) == (0, 48, "disk") and (c2["hits"], c2["misses"]) == (48, 0)
    assert result(off)["teacher_cache"]["base"] == {"mode": "off", "folder": None, "hits": 0, "misses": 48,
                                                    "hit_rate": 0.0}
    f2 = result(second)["flops"]
    assert f2["gflops"]["teacher_spent"] == 0 and f2["gflops"]["teacher"] == result(first)["flops"]["gflops"]["teacher"]
    assert f2["ratio_spent_to_full_kd"] < f2["ratio_to_full_kd"] == pytest.approx(1.0, abs=1e-4)
    losses = [[float(r["train/kd"]) for r in logged(cfg) if r.get("train/kd")] for cfg in (first, second, off)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6) and losses[0] == pytest.approx(losses[2], abs=1e-6)
    main([str(tmp_path / "cache")])
    assert "48/48 examples filled" in capsys.readouterr().out


def test_a_run_gives_the_same_losses_on_an_empty_and_on_a_filled_entry(make_cfg, tmp_path):
    """Entropy selection (the teacher answers a few rows per batch) with seed 2 on a fresh cache and on an entry
    filled by full KD of seed 1 (batches of 6, another order): the same losses to the bit."""
    other = make_cfg("task=sst2", "seed=1", "distill.batch_size=6", out="other")
    run(other)
    teacher = f"teacher.dirs.base={result(other)['teachers']['base']['dir']}"
    filled = make_cfg("task=sst2", "sampler=entropy", "seed=2", teacher, out="filled")
    run(filled)
    fresh = make_cfg("task=sst2", "sampler=entropy", "seed=2", teacher, f"paths.cache_dir={tmp_path / 'fresh'}",
                     out="fresh")
    run(fresh)
    assert result(filled)["teacher_cache"]["base"]["hits"] > 0 == result(fresh)["teacher_cache"]["base"]["hits"]
    losses = [[r["train/kd"] for r in logged(cfg) if r.get("train/kd")] for cfg in (filled, fresh)]
    assert losses[0] and losses[0] == losses[1]


def test_teacher_dropout_runs_without_cache(make_cfg):
    cfg = make_cfg("task=sst2", "distill.teacher_dropout=true", "distill.epochs=2")
    run(cfg)
    assert result(cfg)["teacher_cache"]["base"]["mode"] == "off"
    assert result(cfg)["teacher_cache"]["base"]["misses"] == 96


@pytest.mark.parametrize("options, message", [
    (["distill.teacher_cache=dsk"], "distill.teacher_cache='dsk': choose one of"),
    (["distill.teacher_cache=memory", "distill.teacher_dropout=true"], "there is nothing to cache"),
])
def test_cache_options_are_checked_before_training(make_cfg, no_fit, options, message):
    with pytest.raises(UserError, match=message):
        run(make_cfg("task=sst2", *options))
    assert not no_fit
