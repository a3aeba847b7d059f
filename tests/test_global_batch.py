"""Many processes decide as one process would (dkd/global_batch.py): under trainer=ddp_sim (2 ranks × b rows) the
strategies rank, bin and weigh the global batch of 2b rows, and the run trains as one process with batch 2b does."""
import json
from pathlib import Path

import pytest
import torch

from dkd.global_batch import GlobalBatch
from dkd.run import run
from tests.conftest import gloo_teardown_flaky, make_tiny_model
from tests.test_resume import assert_same_weights


# ------------------------------------------------------------------------------------------------ by hand, one rank
def test_one_rank_hands_everything_back_unchanged():
    one = GlobalBatch()
    x = torch.randn(4, 2, requires_grad=True)
    part = one.part(torch.tensor([0, 2, 3]))
    assert one.whole(x) is x and part.gather(x) is x and not part.idle
    assert part.local_rows.tolist() == [0, 2, 3]
    own, index = part.take(torch.tensor([2, 0]))
    assert own.all() and index.tolist() == [2, 0]
    assert part.mean(lambda reduction: torch.tensor(3.0) if reduction == "mean" else torch.tensor(9.0)) == 3.0


def fake_ranks(world: int, locals_: list[torch.Tensor]):
    """``world`` GlobalBatch views whose gather stacks the given per-rank tensors (as all_gather would)."""
    def gather_for(tensors):
        return lambda t: torch.stack(tensors)
    return [GlobalBatch(world, r, gather_for(locals_), lambda t: t) for r in range(world)]


def test_rank_r_row_j_is_global_row_j_times_r_plus_r():
    """EpochSampler deals examples out in turn: rank 0 holds global rows 0, 2, 4, rank 1 rows 1, 3, 5."""
    rank0, rank1 = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5])
    views = fake_ranks(2, [rank0, rank1])
    assert views[0].whole(rank0).tolist() == [0, 1, 2, 3, 4, 5] == views[1].whole(rank1).tolist()


def test_a_part_splits_the_global_rows_by_rank_and_gathers_them_back_in_order():
    rows = torch.tensor([1, 2, 5])  # global rows: 1 and 5 are rank 1's (its rows 0 and 2), 2 is rank 0's (row 1)
    logits = {0: torch.tensor([[20.0]]), 1: torch.tensor([[10.0], [50.0]], requires_grad=True)}
    padded = [torch.tensor([[20.0], [0.0]]), torch.tensor([[10.0], [50.0]])]
    parts = [GlobalBatch(2, r, lambda t: torch.stack(padded)).part(rows) for r in (0, 1)]
    assert parts[0].local_rows.tolist() == [1] and parts[1].local_rows.tolist() == [0, 2]
    gathered = parts[1].gather(logits[1])
    assert gathered.flatten().tolist() == [10.0, 20.0, 50.0]  # trained-index order: global rows 1, 2, 5
    gathered.sum().backward()
    assert logits[1].grad.tolist() == [[1.0], [1.0]]  # this rank's rows keep their gradient
    own, index = parts[1].take(torch.tensor([2, 1, 0]))
    assert own.tolist() == [True, False, True] and index.tolist() == [1, 0]


def test_a_rank_without_rows_trains_a_stand_in_row_at_weight_zero():
    part = GlobalBatch(2, 0, lambda t: torch.stack([t, t])).part(torch.tensor([1, 3]))  # both rows are rank 1's
    assert part.idle and part.local_rows.tolist() == [0]
    assert part.mean(lambda reduction: torch.tensor(5.0)) == 0.0
    assert GlobalBatch(2, 1).part(torch.tensor([1, 3])).mean(lambda reduction: torch.tensor(5.0)) == 5.0  # 2/2 · 5


# ------------------------------------------------------------------------------------------------ DDP = one process
def teachers(make_cfg, tmp_path, *models) -> list[str]:
    """Both teachers fine-tuned once (one process), given to every run by folder."""
    cfg = make_cfg(*models, "teacher=both", "stage=teacher", out="teachers")
    run(cfg)
    roles = {str(Path(cfg.backbone.teachers[r]).resolve()): r for r in ("base", "large")}
    given = []
    for recipe in (Path(cfg.paths.teachers_dir) / cfg.task.name).glob("*/recipe.json"):
        given.append(f"teacher.dirs.{roles[str(Path(json.loads(recipe.read_text())['model']).resolve())]}"
                     f"={recipe.parent}")
    return sorted(given)


def decisions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("strategies", [
    ("sampler=entropy", "sampler.ratio=0.25", "adoption=hard"),  # efficient: the top 4 of 16, then two bins
    pytest.param(("sampler=entropy", "sampler.mode=faithful", "sampler.ratio=0.1", "adoption=soft_instance",
                  "objective=kd_pt", "weighting=uncertainty"),  # faithful: KD on the top 1 of 16 (one rank distils
                 marks=pytest.mark.slow),                       # none), per-row weights; 12 s: the slow tests
], ids=["efficient-hard", "faithful-soft_instance-uncertainty"])
@gloo_teardown_flaky
def test_two_processes_decide_and_train_as_one(make_cfg, tmp_path, strategies):
    """2 ranks × 8 rows and 1 process × 16 rows: the same rows trained and distilled at every step, the same routes
    and weights, the same loss, the same student (dropout off so that the two runs can agree)."""
    torch.manual_seed(0)  # the same student whatever ran before
    student = make_tiny_model(tmp_path / "student-nodrop", dropout=0.0)
    config = json.loads((student / "config.json").read_text())  # a head that spreads the logits, so that no two rows
    (student / "config.json").write_text(json.dumps({**config, "initializer_range": 1.0}))  # tie in uncertainty
    # every batch as wide as the longest row allows: the logits of a row do not depend on which rows share its batch,
    # so that float noise cannot reorder two rows of nearly equal uncertainty between the two runs
    models = (f"backbone.student.name_or_path={student}", "task=sst2", "distill.epochs=2", "teacher=both",
              "data.padding=max_length", "data.max_seq_length=16")
    given = teachers(make_cfg, tmp_path, *models)
    runs = {}
    for name, batch in (("one", ("distill.batch_size=16",)), ("two", ("distill.batch_size=8", "trainer=ddp_sim"))):
        record = tmp_path / f"{name}.jsonl"
        cfg = make_cfg(*models, *given, *strategies, *batch, "keep_last_ckpt=true",
                       "+callbacks.record._target_=tests.conftest.RecordDecisions", f"+callbacks.record.path={record}",
                       out=name)
        run(cfg)
        runs[name] = (cfg, decisions(record))
    (one, steps_one), (two, steps_two) = runs["one"], runs["two"]
    assert len(steps_one) == len(steps_two) == 6  # 48 examples, 16 a step, 2 epochs
    for a, b in zip(steps_one, steps_two):
        assert a["trained"] == b["trained"] and a["distilled"] == b["distilled"]
        assert [(r["teachers"], r["ids"]) for r in a["routes"]] == [(r["teachers"], r["ids"]) for r in b["routes"]]
        for ra, rb in zip(a["routes"], b["routes"]):
            assert ra["weight"] == pytest.approx(rb["weight"], abs=1e-5)
        for term in a["weights"]:
            assert a["weights"][term] == pytest.approx(b["weights"][term], abs=1e-5)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert_same_weights(Path(one.paths.output_dir) / "checkpoints" / "last.ckpt",
                        Path(two.paths.output_dir) / "checkpoints" / "last.ckpt", atol=1e-5)
    from tests.test_train import read_metrics
    shares = [{k: v for k, v in read_metrics(c)["decisions"].items() if k.startswith("sampler_class_")}
              for c in (one, two)]  # the KD rows' gold classes: the global batch's, on every rank
    assert len(shares[0]) == 2 and shares[0] == pytest.approx(shares[1], abs=1e-6)
    distilled = {len(s["distilled"]) for s in steps_two}
    assert distilled == ({4} if "adoption=hard" in strategies else {1})  # ⌊r · 16⌋, not ⌊r · 8⌋ per rank
