"""python -m dkd.ship.evaluate: each example's prediction of a finished run on dev and the labelled test split, checked
against the run's own dev metrics; and distill.train_limit, the fixed-subset baseline it is used with."""
import json
from pathlib import Path

import pytest

from dkd.errors import UserError
from dkd.run import run
from dkd.ship.evaluate import evaluate_job, jobs_under, main


def test_predictions_on_dev_and_test_match_the_run_and_the_labels(make_cfg, capsys):
    cfg = make_cfg("task=sst5", "distill.train_limit=16")
    run(cfg)
    job = Path(cfg.paths.output_dir)
    metrics = json.loads((job / "metrics.json").read_text())
    # the teacher saw all 48 training rows; the student a fixed 16 of them, each epoch
    assert (metrics["pool_examples"], metrics["train_examples"], metrics["flops"]["examples"]) == (48, 16, 16)
    assert len(metrics["code"]["commit"]) == 40
    main([str(job), "--threads", "1"])
    assert "test/acc" in capsys.readouterr().out
    out = json.loads((job / "predictions.json").read_text())
    assert set(out) == {"dev", "test"} and out["test"]["examples"] == 16
    assert set(out["test"]["metrics"]) == {"test/acc", "test/score"}  # each split's score is named after it
    assert out["dev"]["metrics"]["dev/acc"] == pytest.approx(metrics["dev"]["dev/acc"], abs=1e-4)
    for split in out.values():  # accuracy is the share of rows marked right, and the marks follow the predictions
        assert sum(split["correct"]) / len(split["correct"]) == pytest.approx(
            next(v for k, v in split["metrics"].items() if k.endswith("/acc")))
        assert all(p in range(5) for p in split["predictions"])
    metrics["dev"]["dev/acc"] += 0.25  # a run whose logged dev score the exported student does not reproduce
    (job / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(UserError, match="scores dev/acc .* but the run logged"):
        evaluate_job(job)


def test_a_folder_without_finished_jobs_is_refused(tmp_path):
    with pytest.raises(UserError, match="neither a finished run"):
        jobs_under(tmp_path)


def test_a_bf16_run_is_scored_in_bf16_in_the_batches_it_scored_itself(make_cfg, monkeypatch):
    """A trainer.precision=bf16-mixed run logged its dev metrics under bf16 autocast, in file order, eval_batch_size
    rows a batch padded to its longest; its predictions are made the same way (under bf16 a row's logits depend on its
    batch's width: other batches flip a borderline row or two, a false alarm), so they reproduce the run exactly."""
    import dkd.ship.evaluate as evaluate
    from dkd.models import load_tokenizer

    cfg = make_cfg("task=sst2", "trainer.precision=bf16-mixed", "data.eval_batch_size=8")
    run(cfg)
    out = Path(cfg.paths.output_dir)
    shapes = []

    def recording(*args, **kwargs):
        model = load_classifier(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
        return model

    load_classifier = evaluate.load_classifier
    monkeypatch.setattr(evaluate, "load_classifier", recording)
    predicted = evaluate_job(out, ("dev",))["dev"]
    logged = json.loads((out / "metrics.json").read_text())["dev"]
    assert predicted["metrics"]["dev/acc"] == pytest.approx(logged["dev/acc"], abs=1e-6)
    tokenizer = load_tokenizer(str(out / "student"))
    lengths = [len(ids) for ids in tokenizer(evaluate.run_dev_splits(evaluate.run_config(out)[1])[1]["dev"].texts[0],
                                             truncation=True, max_length=cfg.data.max_seq_length)["input_ids"]]
    assert len(lengths) > 8 and len(set(lengths)) > 1  # several batches of mixed lengths: the order matters
    assert shapes == [(len(lengths[i:i + 8]), max(lengths[i:i + 8])) for i in range(0, len(lengths), 8)]
