"""Reading the GLUE layout and its quirks, custom files, tokenization per model, and the bad-input errors."""
import json
from pathlib import Path

import pytest
import torch

from dkd.data import (
    Collator,
    DataError,
    EpochSampler,
    TaskDataModule,
    UserError,
    fingerprint,
    load_local,
    load_splits,
    load_task_data,
    read_table,
)
from dkd.models import load_tokenizer
from dkd.tasks import custom_task, get_task
from tests.conftest import WORDS, write_tsv


def test_quirks_of_the_glue_layout(assets):
    glue = assets["glue"]
    mrpc = load_local(get_task("mrpc"), glue / "MRPC")  # BOM before "Quality"
    assert set(mrpc) == {"train", "dev"} and len(mrpc["train"].texts) == 2
    cola = load_local(get_task("cola"), glue / "CoLA")  # no header
    assert len(cola["dev"].labels) == 16 and set(cola["dev"].texts[0][0].split()) <= set(WORDS)
    rte = load_local(get_task("rte"), glue / "RTE")  # string labels, bare quotes
    assert set(rte["train"].labels) <= {0, 1} and rte["train"].texts[1][0] == 'a "quoted" plot'
    mnli = load_local(get_task("mnli"), glue / "MNLI")
    assert set(mnli) == {"train", "dev_m", "dev_mm"}
    stsb = load_local(get_task("stsb"), glue / "STS-B")
    assert all(isinstance(v, float) for v in stsb["train"].labels)


def test_real_glue_row_counts(glue_dir):
    counts = {"SST-2": ("sst2", 67349, 872), "MRPC": ("mrpc", 3668, 408), "RTE": ("rte", 2490, 277)}
    for folder, (task, n_train, n_dev) in counts.items():
        splits = load_local(get_task(task), glue_dir / folder)
        assert (len(splits["train"].labels), len(splits["dev"].labels)) == (n_train, n_dev)


def test_real_imdb_reads_both_splits():
    import os
    from pathlib import Path

    imdb = Path(os.environ.get("IMDB_DIR", "/nonexistent"))
    if not (imdb / "train.tsv").is_file():
        pytest.skip("IMDB_DIR is not set to the IMDb TSV folder")
    splits = load_local(get_task("imdb"), imdb)
    assert len(splits["train"].labels) == len(splits["dev"].labels) == 25000
    assert sum(splits["train"].labels) == 12500


def test_real_sst5_reads_five_classes():
    """The paper's SST-5 (../shared/data/sst5 beside the project, or SST5_DIR): the sentence-level split and the
    class counts of its README."""
    import os
    from collections import Counter

    from tests.conftest import ROOT

    sst5 = Path(os.environ.get("SST5_DIR", ROOT.parent / "shared" / "data" / "sst5"))
    if not (sst5 / "train.tsv").is_file():
        pytest.skip(f"no SST-5 files in {sst5} (set SST5_DIR)")
    splits = load_local(get_task("sst5"), sst5)
    assert (len(splits["train"].labels), len(splits["dev"].labels)) == (8544, 1101)
    assert [Counter(splits["train"].labels)[k] for k in range(5)] == [1092, 2218, 1624, 2322, 1288]


def test_sst5_distils_with_each_uncertainty_measure(make_cfg):
    """Five classes through a whole run (fixture data): the measures rank rows differently there."""
    from dkd.run import run

    for measure in ("entropy", "margin", "least_confidence"):
        cfg = make_cfg("task=sst5", f"sampler={measure}", "sampler.ratio=0.5", out=measure)
        run(cfg)
        metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
        assert set(metrics["dev"]) == {"dev/acc", "dev/score"} and metrics["decisions"]["sampler_selected"] == 0.5


def test_missing_file_names_path_and_fix(assets, tmp_path):
    (tmp_path / "SST-2").mkdir()
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"], [["good", 1]])
    with pytest.raises(DataError, match=r"missing dev file .*SST-2/dev.tsv.*task.data_dir"):
        load_local(get_task("sst2"), tmp_path / "SST-2")


def test_missing_column_is_named(tmp_path):
    for split in ("train", "dev"):
        write_tsv(tmp_path / f"{split}.tsv", ["text", "label"], [["good", 1]])
    with pytest.raises(DataError, match=r"train.tsv: no column 'sentence' \(columns are \['text', 'label'\]\)"):
        load_local(get_task("sst2"), tmp_path)


def test_label_outside_label_set_names_row_and_value(tmp_path):
    write_tsv(tmp_path / "train.tsv", ["sentence", "label"], [["good", 1], ["bad", "positive"]])
    write_tsv(tmp_path / "dev.tsv", ["sentence", "label"], [["good", 1]])
    with pytest.raises(DataError, match=r"row 2, column 'label' has label 'positive', which is not one of \['0', '1'"):
        load_local(get_task("sst2"), tmp_path)


def test_empty_split(tmp_path):
    write_tsv(tmp_path / "train.tsv", ["sentence", "label"], [["good", 1]])
    write_tsv(tmp_path / "dev.tsv", ["sentence", "label"], [])
    with pytest.raises(DataError, match=r"dev.tsv: the split is empty"):
        load_local(get_task("sst2"), tmp_path)


def test_no_local_dir_and_no_hub(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"no local data .*does not exist.*nyu-mll/glue.*GLUE_DIR"):
        load_splits(get_task("rte"), str(tmp_path / "nowhere"))


def test_hub_path_maps_integer_labels(monkeypatch):
    import datasets

    class Fake:
        def to_pandas(self):
            import pandas as pd

            return pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0]})

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: Fake())
    splits = load_splits(get_task("rte"), None)
    assert splits["train"].labels == [1, 0] and splits["dev"].texts == [["a", "b"], ["c", "d"]]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_custom_files(tmp_path, suffix):
    rows = [{"q": "good plot", "a": "a", "y": "yes"}, {"q": "bad plot", "a": "b", "y": "no"}]
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        path.write_text("q,a,y\n" + "\n".join(f"{r['q']},{r['a']},{r['y']}" for r in rows))
    elif suffix == ".tsv":
        write_tsv(path, ["q", "a", "y"], [list(r.values()) for r in rows])
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        path.write_text(json.dumps(rows))
    spec = custom_task(["q", "a"], "y", ["no", "yes"], ["acc"], str(path), str(path))
    splits = load_splits(spec, None, {"train": str(path), "dev": str(path)})
    assert splits["train"].labels == [1, 0] and splits["dev"].texts[0] == ["good plot", "bad plot"]
    assert read_table(path).shape == (2, 3)


def sst2(assets, **limits):
    return load_task_data(get_task("sst2"), str(assets["glue"] / "SST-2"), **limits)


def test_each_role_gets_its_own_tokenization_and_cache(assets, tmp_path):
    tokenizers = {"student": load_tokenizer(str(assets["student"])), "large": load_tokenizer(str(assets["large"]))}
    dm = TaskDataModule(get_task("sst2"), sst2(assets), tokenizers, batch_size=4, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    student, large = batch["inputs"]["student"], batch["inputs"]["large"]
    assert student["attention_mask"].equal(large["attention_mask"])  # same words, same lengths
    assert not student["input_ids"].equal(large["input_ids"])  # different vocabularies, different ids
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4  # 2 tokenizers x 2 splits
    again = TaskDataModule(get_task("sst2"), sst2(assets), tokenizers, cache_dir=str(tmp_path / "cache"))
    again.setup()
    assert again.datasets["dev"].encodings["large"] == dm.datasets["dev"].encodings["large"]


def test_train_limit_is_a_fixed_subset(assets):
    first, second = sst2(assets, train_limit=10), sst2(assets, train_limit=10)
    assert len(first["train"].labels) == 10 and first["train"].texts == second["train"].texts
    assert len(first["dev"].labels) == 16  # dev_limit is separate


def test_fingerprint_follows_the_examples_not_the_files(assets, tmp_path):
    base = fingerprint(sst2(assets), ("0", "1"))
    assert fingerprint(sst2(assets), ("0", "1")) == base
    assert fingerprint(sst2(assets, train_limit=20), ("0", "1")) != base
    assert fingerprint(sst2(assets, dev_limit=8), ("0", "1")) != base
    assert fingerprint(sst2(assets), ("1", "0")) != base  # label order is part of the data
    copy = tmp_path / "SST-2"  # the same rows in another folder: the same data
    copy.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (copy / name).write_bytes((assets["glue"] / "SST-2" / name).read_bytes())
    assert fingerprint(load_task_data(get_task("sst2"), str(copy)), ("0", "1")) == base
    text = (copy / "train.tsv").read_text().splitlines()
    text[1] = text[1].replace("\t", " changed\t", 1)  # one word more in one row
    (copy / "train.tsv").write_text("\n".join(text) + "\n")
    assert fingerprint(load_task_data(get_task("sst2"), str(copy)), ("0", "1")) != base


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG does not change the order
    assert list(b) == first and sorted(first) == list(range(10))
    a.set_epoch(1)
    assert list(a) != first
    assert list(EpochSampler(10, seed=4)) != first
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_ranks_share_the_global_batches_of_one_process():
    one = list(EpochSampler(12, seed=0))
    ranks = [list(EpochSampler(12, seed=0, replicas=2, rank=r)) for r in (0, 1)]
    b = 3  # 2 ranks x batch 3 == one process with batch 6
    for step in range(2):
        together = ranks[0][step * b:(step + 1) * b] + ranks[1][step * b:(step + 1) * b]
        assert sorted(together) == sorted(one[step * 2 * b:(step + 1) * 2 * b])
    padded = [list(EpochSampler(5, seed=0, replicas=2, rank=r)) for r in (0, 1)]
    assert len(padded[0]) == len(padded[1]) == 3  # padded by repeating the head, as DistributedSampler does


def test_resume_skips_the_examples_already_trained_in_that_epoch_only():
    sampler = EpochSampler(10, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume(epoch=2, start=4)
    assert list(sampler) == full[4:]
    assert list(sampler) == full  # once
    sampler.resume(epoch=1, start=4)
    assert list(sampler) == full  # another epoch: nothing skipped


def test_collator_pads_to_a_fixed_width():
    """data.padding=max_length: the authors' pad_to_max_length."""
    collate = Collator({"student": 0}, regression=False, width=5)
    batch = collate([{"idx": 0, "label": 1, "inputs": {"student": {"input_ids": [2, 5, 3]}}}])
    assert batch["inputs"]["student"]["input_ids"].tolist() == [[2, 5, 3, 0, 0]]
    assert batch["inputs"]["student"]["attention_mask"].tolist() == [[1, 1, 1, 0, 0]]


def test_padding_max_length_runs_every_batch_at_max_seq_length(make_cfg):
    """Through a real run of both stages: every forward of every model (teacher fine-tuning, the teacher queried on the
    rows a sampler keeps, the student, dev) reads rows data.max_seq_length wide; and the option is checked first."""
    from torch import nn
    from torch.nn.modules.module import register_module_forward_pre_hook

    from dkd.run import run

    widths = set()

    def record(module, args):
        if isinstance(module, nn.Embedding) and args and args[0].dim() == 2:  # ids or positions: (rows, width)
            widths.add(args[0].size(1))

    hook = register_module_forward_pre_hook(record)
    try:
        run(make_cfg("task=rte", "data.padding=max_length", "data.max_seq_length=24", "sampler=entropy",
                     "sampler.mode=faithful", "sampler.ratio=0.5", "distill.teacher_cache=off"))
    finally:
        hook.remove()
    assert widths == {24}
    with pytest.raises(UserError, match="data.padding='max'.*one of \\['longest', 'max_length'\\]"):
        run(make_cfg("data.padding=max"))


def test_collator_pads_dynamically():
    collate = Collator({"student": 0}, regression=False)
    batch = collate([
        {"idx": 0, "label": 1, "inputs": {"student": {"input_ids": [2, 5, 3]}}},
        {"idx": 1, "label": 0, "inputs": {"student": {"input_ids": [2, 3]}}},
    ])
    assert batch["inputs"]["student"]["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["inputs"]["student"]["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].dtype == torch.long


def test_collator_rounds_the_width_up_to_a_multiple():
    """The benchmark's --pad-multiple: the longest row rounded up (3 → 4), a width already a multiple kept."""
    collate = Collator({"student": 7}, regression=False, multiple=4)
    rows = [{"idx": 0, "label": 1, "inputs": {"student": {"input_ids": [2, 5, 3]}}}]
    batch = collate(rows)
    assert batch["inputs"]["student"]["input_ids"].tolist() == [[2, 5, 3, 7]]
    assert batch["inputs"]["student"]["attention_mask"].tolist() == [[1, 1, 1, 0]]
    rows[0]["inputs"]["student"]["input_ids"] = [2, 5, 5, 3]
    assert collate(rows)["inputs"]["student"]["input_ids"].shape == (1, 4)
