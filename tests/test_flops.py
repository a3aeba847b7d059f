"""FLOP accounting: the formula against a hand count, and what a run counts per sampler mode."""
import csv
import json
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from transformers import BertConfig, BertForSequenceClassification

from dkd.flops import FlopCounter, forward_flops
from dkd.run import run
from tests.conftest import shrunk_cfg


def test_forward_flops_match_a_hand_count():
    config = BertConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_labels=3)
    # per layer, L = 5: projections 2·5·(4·16 + 2·4·8) = 1280, attention 4·25·4 = 400; pooler 32 + classifier 24
    assert forward_flops(config, rows=1, width=5) == 2 * (1280 + 400) + 32 + 24
    assert forward_flops(config, rows=3, width=5) == 3 * forward_flops(config, 1, 5)


def test_bert_base_at_128_tokens():
    """bert-base (H 768, I 3072, 12 layers), one 128-token sequence: 22.3 GFLOPs (MACs × 2), 2/3 of it in the
    feed-forward and projection matrices."""
    config = BertConfig(num_labels=2)
    assert forward_flops(config, 1, 128) / 1e9 == pytest.approx(22.35, abs=0.01)


@pytest.mark.parametrize("compiled", [False, True])
def test_the_hooks_count_a_model_called_positionally_or_with_embeddings(compiled):
    """``model(input_ids, attention_mask)`` and ``model(inputs_embeds=…)`` are counted like ``model(input_ids=…)``;
    so is a model wrapped by ``torch.compile`` (its forward takes ``*args, **kwargs``: the argument names are those of
    the model inside; ``backend="eager"``: traced by dynamo, no code generated)."""
    config = BertConfig(vocab_size=20, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                        num_labels=2)
    model = BertForSequenceClassification(config).eval()
    if compiled:
        model = torch.compile(model, backend="eager")
    trainer = type("Trainer", (), {"training": True})()
    student = type("Student", (), {"role": "student", "model": model})()
    counter = FlopCounter()
    counter.on_fit_start(trainer, student)
    ids, mask = torch.ones(3, 5, dtype=torch.long), torch.ones(3, 5, dtype=torch.long)
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
            model(ids, mask)
            model(inputs_embeds=torch.zeros(3, 5, 8), attention_mask=mask)
    finally:
        counter.on_fit_end(trainer, student)
    assert counter._batch["student_scoring"] == 3 * forward_flops(config, 3, 5)


def flops(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["flops"]


def logged_gflops(cfg) -> dict:
    """The unrounded totals of the last epoch, as logged (metrics.json rounds to 4 significant digits)."""
    rows = list(csv.DictReader(open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")))
    last = [r for r in rows if r.get("flops/teacher")][-1]
    return {k.split("/", 1)[1]: float(v) for k, v in last.items() if k.startswith("flops/") and v}


@pytest.fixture(scope="module")
def beside_full_kd(assets, tmp_path_factory):
    """One full-KD run, the reference of the tests below, and a ``make_cfg`` whose runs land beside it (each under
    its own ``out``), so that the teacher is fine-tuned once for all of them (one store)."""
    root = tmp_path_factory.mktemp("flops")
    full = shrunk_cfg(assets, root, "task=sst2", out="full")
    run(full)
    yield full, lambda *overrides, out: shrunk_cfg(assets, root, *overrides, out=out)
    GlobalHydra.instance().clear()


def test_full_kd_costs_what_full_kd_costs(beside_full_kd):
    full, _ = beside_full_kd
    f = flops(full)
    assert f["examples"] == 48 and f["gflops"]["student_scoring"] == 0
    assert f["ratio_to_full_kd"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("mode, scoring, student_share", [("efficient", True, 0.5), ("faithful", False, 1.0)])
def test_selection_counts_what_ran(beside_full_kd, mode, scoring, student_share):
    full, make_cfg = beside_full_kd
    cfg = make_cfg("task=sst2", "sampler=entropy", "sampler.ratio=0.5", f"sampler.mode={mode}", out=mode)
    run(cfg)
    f, ref = logged_gflops(cfg), logged_gflops(full)
    assert (f["student_scoring"] > 0) == scoring
    # half the rows reach the teacher (trimmed rows can only be shorter); the student trains on half or on all
    assert 0.3 < f["teacher"] / ref["teacher"] <= 0.5 + 1e-6
    assert f["student_train"] / ref["student_train"] == pytest.approx(student_share, abs=0.2)
    assert flops(cfg)["ratio_to_full_kd"] < 1.0


def test_a_pool_compares_with_full_kd_on_its_batches(beside_full_kd):
    """The full-KD reference of a pool of 4 batches is full KD on those 4 batches (each padded to its own longest),
    not one 32-row batch padded to the pool's longest: the same as a run with sampler=none counts."""
    full, make_cfg = beside_full_kd
    pooled = make_cfg("task=sst2", "sampler=entropy", "sampler.ratio=0.25", "sampler.pool=4", out="pooled")
    run(pooled)
    assert logged_gflops(pooled)["full_kd"] == pytest.approx(logged_gflops(full)["full_kd"], rel=1e-6)
