"""Every option of every config group composes and passes the run checks (or says why it cannot run here); the CLI
prints a config and rejects unknown options."""
import re
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dkd.errors import UserError
from dkd.preflight import check
from tests.conftest import ROOT, compose_cfg

GROUPS = ["task", "backbone", "teacher", "stage", "sampler", "adoption", "objective", "weighting", "variant", "preset",
          "trainer", "callbacks", "logger", "experiment", "hparams_search"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((ROOT / "conf" / g).glob("*.yaml"))]


def test_required_options_exist():
    have = set(OPTIONS)
    for group, names in {
        "task": "sst2 mrpc rte cola stsb qnli qqp mnli wnli imdb sst5 custom", "backbone": "minilm bert",
        "teacher": "base large both", "stage": "teacher distill", "trainer": "cpu gpu ddp ddp_sim",
        "logger": "csv wandb tensorboard", "hparams_search": "optuna",
        "adoption": "single ensemble hard soft soft_instance",
        "sampler": "none random entropy margin least_confidence entropy_r confidence_r",
        "callbacks": "default early_stopping none",
        "objective": "kd kd_pt", "weighting": "static uncertainty uncertainty_r uncertainty_kd",
        "variant": "kd kd_uncertainty kd_pt kd_pt_uncertainty kd_pt_uncertainty_r",
        "experiment": "data_selection teacher_study teacher_study_bert objective_study combined",
    }.items():
        for name in names.split():
            assert (group, name) in have, f"missing conf/{group}/{name}.yaml"


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    # everything but the runtime-only paths resolves
    for key in ("task", "backbone", "teacher", "stage", "finetune", "distill", "trainer", "data"):
        assert OmegaConf.to_container(cfg[key], resolve=True)  # interpolations resolve (??? may stay for custom)
    if group in ("adoption", "weighting") or (group == "objective" and cfg.task.name != "custom"):
        assert callable(instantiate(cfg[group]))
    if group == "sampler":
        assert hasattr(instantiate(cfg.sampler), "rows_to_train")


def test_strategy_defaults_are_static_kd():
    cfg = compose_cfg([])
    assert cfg.stage.name == "distill" and cfg.task.name == "sst2" and cfg.backbone.name == "minilm"
    assert cfg.teacher.names == ["base"] and cfg.backbone.student.layers == 3


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_prints_job_config():
    out = run_cli("--cfg", "job", "teacher=large", "sampler=none")
    assert out.returncode == 0, out.stderr
    assert "names:\n  - large" in out.stdout and "dkd.strategies.samplers.AllInstances" in out.stdout


def test_cli_rejects_unknown_option():
    out = run_cli("--cfg", "job", "sampler=nonsense")
    assert out.returncode != 0
    assert "Could not find 'sampler/nonsense'" in out.stderr
    assert "Available options" in out.stderr


# Options that cannot run here, and the one clear error each gives instead (anything else must pass the checks).
CANNOT_RUN_HERE = {
    ("trainer", "gpu"): "trainer options: No supported gpu backend found",
    ("trainer", "ddp"): "trainer options: No supported gpu backend found",
    ("task", "custom"): "task=custom needs task.train_file=",  # the user's files
    ("task", "qnli"): "no local data",  # GLUE tasks beyond the fixture folder: no hub here
    ("task", "qqp"): "no local data",
    ("task", "wnli"): "no local data",
    ("teacher", "both"): "adoption=single takes one teacher",  # a pool needs a multi-teacher adoption
}


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_passes_the_run_checks_or_says_why_not(make_cfg, no_fit, group, option):
    """Each offered option works (its Trainer, callbacks, strategies, models and data check out) or is one that needs
    what this machine lacks, with a clear error."""
    overrides = [f"{group}={option}"]
    if group == "adoption" and option != "single":
        overrides.append("teacher=both")  # a pool of teachers to choose from
    if group == "weighting" and option in ("uncertainty", "uncertainty_r"):
        overrides.append("objective=kd_pt")  # they weigh KD against hidden-state alignment
    if group == "trainer":
        overrides.append(f"trainer.accelerator={compose_cfg(overrides).trainer.accelerator}")  # make_cfg pins cpu
    cfg = make_cfg(*overrides)
    if (group, option) in CANNOT_RUN_HERE:
        with pytest.raises(UserError, match=re.escape(CANNOT_RUN_HERE[group, option])):
            check(cfg)
    else:
        plan = check(cfg)
        assert plan.splits["train"].labels and plan.teachers


def test_the_configuration_table_lists_every_option_of_every_group():
    """docs/configuration.md's table names each group's options exactly as conf/ has them (it went stale once)."""
    table = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        match = re.match(r"\| `([\w/]+)` \| (.+?) \| .* \|$", line)
        if match and (ROOT / "conf" / match.group(1)).is_dir():
            table[match.group(1)] = set(re.findall(r"[a-z][a-z0-9_]*", re.sub(r"\(.*?\)|one file per callback:", "",
                                                                              match.group(2).replace("**", ""))))
    for group in [*GROUPS, "hydra/launcher"]:
        on_disk = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
        assert table.get(group) == on_disk, (group, table.get(group), on_disk)


@pytest.mark.parametrize("experiment, name", [
    ("repro_selection_sst5", "sst5-entropy-r0.1-efficient-seed42"), ("repro_adoption", "sst5-hard-seed42"),
    ("repro_objective", "sst5-kd_pt_uncertainty-seed42"),
    ("repro_combined", "sst5-entropy-soft_instance-kd_pt_uncertainty-seed42")])
def test_a_study_shares_one_wandb_group_and_names_each_variant(experiment, name):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_cfg([f"experiment={experiment}", "logger=wandb"])
    HydraConfig().set_config(cfg)
    study = experiment.removeprefix("repro_").split("_")[0]
    assert cfg.logger.wandb.group == f"repro-{study}-sst5" and cfg.logger.wandb.name == name
