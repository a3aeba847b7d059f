"""preset=authors[_teacher|_objective]: one word for what lancopku/DynamicKD's released scripts run; each setting is
pinned against the value in their scripts and code (commit 261162d), and each entry point runs end to end."""
import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from dkd.run import run
from dkd.strategies.adoption import HardSplit, SoftBatch
from dkd.strategies.objectives import LogitAndHiddenKD
from dkd.strategies.samplers import MostUncertain
from dkd.strategies.weighting import UncertaintyWeights
from tests.conftest import compose_cfg

# (key, value) as their scripts and code have them; shared by the three entry points
AUTHORS = {
    "sampler.mode": "faithful", "sampler.min_keep": 0, "adoption.faithful": True, "objective.loss": "mse",
    "objective.temperature": 5.0, "objective.faithful": True, "weighting.faithful": True,
    "data.max_seq_length": 128, "data.padding": "max_length", "distill.lr": 2e-5, "distill.epochs": 3,
    "distill.weight_decay": 0.0, "distill.teacher_dropout": True, "finetune.lr": 5e-5, "finetune.epochs": 3,
    "finetune.batch_size": 32, "finetune.warmup_ratio": 0.05, "finetune.weight_decay": 0.0,
    "callbacks.model_checkpoint": None, "trainer.gradient_clip_val": 1.0,
    "seed": 1, "finetune.seed": 42, "distill.warmup_rounding": "ceil", "finetune.warmup_rounding": "ceil",
    "distill.scope": "device",
}
SCRIPTS = {
    "authors": {"distill.batch_size": 32, "distill.warmup_ratio": 0.1},
    "authors_teacher": {"distill.batch_size": 16, "distill.warmup_ratio": 0.05, "seed": 1,
                        "teacher.names": ["base", "large"]},
    "authors_objective": {"distill.batch_size": 32, "distill.warmup_ratio": 0.1},
}


def select(cfg, key):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


@pytest.mark.parametrize("preset", sorted(SCRIPTS))
def test_preset_sets_what_their_script_runs(preset):
    cfg = compose_cfg([f"preset={preset}", "sampler=entropy"])
    for key, value in {**AUTHORS, **SCRIPTS[preset]}.items():
        assert select(cfg, key) == value, key


def test_the_command_line_seed_wins_over_the_presets():
    assert compose_cfg(["preset=authors", "seed=3"]).seed == 3 and compose_cfg([]).seed == 42


@pytest.mark.parametrize("rounding, steps", [("floor", 34), ("ceil", 35)])
def test_warm_up_steps_round_as_dkd_or_as_hf_trainer(assets, rounding, steps):
    """MRPC: 3,668 rows, batch 32, 3 epochs = 345 steps, warm-up 0.1: ⌊34.5⌋ = 34 (DKD), ⌈34.5⌉ = 35 (HF Trainer)."""
    from types import SimpleNamespace

    from dkd.models import load_classifier
    from dkd.module import FineTuneSystem

    system = FineTuneSystem(load_classifier(str(assets["teacher"]), 2), "base", ["acc"], ["dev"], 2,
                            warmup_ratio=0.1, warmup_rounding=rounding)
    system._trainer = SimpleNamespace(estimated_stepping_batches=345)
    scheduler = system.configure_optimizers()["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(37):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.step()
    assert max(range(37), key=lambda i: lrs[i]) == steps  # the peak: the first step after warm-up


def test_presets_choose_their_strategies_and_the_command_line_wins():
    teacher = compose_cfg(["preset=authors_teacher"])
    assert isinstance(instantiate(teacher.adoption), HardSplit) and instantiate(teacher.adoption).reduction == \
        "sum_of_means"
    assert isinstance(instantiate(compose_cfg(["preset=authors_teacher", "adoption=soft"]).adoption), SoftBatch)
    objective = compose_cfg(["preset=authors_objective"])
    kd_pt, weights = instantiate(objective.objective), instantiate(objective.weighting)
    assert isinstance(kd_pt, LogitAndHiddenKD) and (kd_pt.positions, kd_pt.mask) == ("all", False)
    assert isinstance(weights, UncertaintyWeights) and weights.rule == "uncertainty" and not weights.detach
    sampler = instantiate(compose_cfg(["preset=authors", "sampler=entropy", "sampler.ratio=0.1"]).sampler)
    assert isinstance(sampler, MostUncertain) and (sampler.mode, sampler.min_keep, sampler.ratio) == \
        ("faithful", 0, 0.1)


@pytest.mark.parametrize("overrides", [
    ("preset=authors", "task=mrpc", "sampler=entropy", "sampler.ratio=0.1", "seed=1"),
    ("preset=authors_teacher", "task=rte"),
    ("preset=authors_objective", "task=mrpc"),
])
def test_each_entry_point_runs_and_reports_the_final_model(make_cfg, overrides):
    # shrunk as every test run is; the batch stays 8 (B·r < 1 at r = 0.1: CE-only steps, as in their code)
    cfg = make_cfg(*overrides, "data.max_seq_length=32")
    run(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["selected"].startswith("last epoch")  # no best-checkpoint selection, as HF Trainer's default
    for role, teacher in metrics["teachers"].items():
        assert json.loads((Path(teacher["dir"]) / "metrics.json").read_text())["selected"].startswith("last epoch")
        recipe = json.loads((Path(teacher["dir"]) / "recipe.json").read_text())
        assert recipe["finetune"]["warmup_ratio"] == 0.05 and recipe["padding"] == "max_length"
    assert all(c["mode"] == "off" for c in metrics["teacher_cache"].values())  # teachers with dropout vary per call
