"""Sweeps through Hydra's submitit launcher: the SLURM option checked by composing it and by rendering the sbatch
script submitit would submit (a real local multirun: tests/test_requeue.py)."""
import json
import os
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from dkd.jobs.cluster import main as preview_main
from dkd.jobs.cluster import sbatch_script
from tests.conftest import compose_cfg


@pytest.fixture(autouse=True)
def no_hydra_config_left():
    """These tests set the global HydraConfig (as a job sees it); later tests must not resolve against it."""
    yield
    HydraConfig.instance().cfg = None


def slurm_cfg(*overrides: str):
    return compose_cfg(["hydra/launcher=slurm", *overrides])


def test_slurm_launcher_maps_each_setting_into_the_sbatch_script():
    cfg = slurm_cfg("hydra.launcher.partition=gpu", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
                    "hydra.launcher.cpus_per_task=6", "hydra.launcher.mem_gb=200", "hydra.launcher.timeout_min=90",
                    "hydra.launcher.array_parallelism=3", "hydra.launcher.account=nlp")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["tasks_per_node"] == 4
    script = sbatch_script(launcher, jobs=6)
    for line in ("--array=0-5%3", "--partition=gpu", "--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4",
                 "--cpus-per-task=6", "--mem=200GB", "--time=90", "--account=nlp"):
        assert f"#SBATCH {line}\n" in script, line
    assert "srun" in script and "submitit.core._submit" in script


def test_the_trainer_follows_the_launcher_inside_a_job(monkeypatch):
    cfg = slurm_cfg("hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4", "trainer=ddp")
    HydraConfig().set_config(cfg)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (1, "auto")  # not in a SLURM job: a run without -m
    monkeypatch.setenv("SLURM_JOB_ID", "1234")  # what a submitit job sees
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (2, 4)
    local = compose_cfg(["hydra/launcher=local", "hydra.launcher.tasks_per_node=2"])
    HydraConfig().set_config(local)  # submitit's local tasks are not Lightning's processes
    assert (local.trainer.num_nodes, local.trainer.devices) == (1, 1)
    basic = compose_cfg(["trainer=ddp"])
    HydraConfig().set_config(basic)  # the basic launcher: no nodes / tasks per node
    assert (basic.trainer.num_nodes, basic.trainer.devices) == (1, "auto")
    cpu = slurm_cfg("hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=null", "hydra.launcher.tasks_per_node=1")
    HydraConfig().set_config(cpu)  # CPU nodes
    assert (cpu.trainer.num_nodes, cpu.trainer.devices) == (2, 1)


def test_threads_follow_the_launchers_cpus_per_task_inside_a_job(monkeypatch):
    slurm = slurm_cfg("hydra.launcher.cpus_per_task=6")
    HydraConfig().set_config(slurm)
    assert slurm.threads is None and slurm.compress.threads is None  # a run without -m: torch's default
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert slurm.threads == 6 == slurm.compress.threads
    local = compose_cfg(["hydra/launcher=local", "hydra.launcher.cpus_per_task=3"])
    HydraConfig().set_config(local)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    assert local.threads == 3
    basic = compose_cfg([])
    HydraConfig().set_config(basic)  # the basic launcher
    assert basic.threads is None
    assert compose_cfg(["threads=4"]).threads == 4


def test_preview_prints_the_script_or_refuses_another_launcher(capsys):
    preview_main(["hydra.launcher.nodes=3", "hydra.launcher.cpus_per_task=5", "seed=1,2", "sampler=entropy,random"])
    out = capsys.readouterr().out
    assert "#SBATCH --nodes=3" in out and "#SBATCH --array=0-3%4" in out and "#SBATCH --cpus-per-task=5" in out
    assert "4 job(s); each job's trainer: num_nodes=3 devices=1" in out and "threads=5 per process" in out
    try:
        preview_main(["hydra/launcher=local"])
    except SystemExit as err:
        assert "hydra/launcher=slurm" in str(err)
    else:
        raise AssertionError("a local launcher was previewed as SLURM")


def test_requirements_name_the_launcher():
    assert "hydra-submitit-launcher" in (Path(__file__).parents[1] / "requirements.txt").read_text()


def test_cpu_threads_hold_under_a_ddp_launcher_and_are_restored(monkeypatch):
    import os

    import torch
    from lightning_fabric.utilities.distributed import _set_num_threads_if_needed

    from dkd.cpu import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with cpu_threads(1):
        _set_num_threads_if_needed(num_processes=2)  # what Lightning's DDP launchers call before starting processes
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"  # inherited by the workers
    assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ


def test_kernels_report_the_instruction_set_a_variable_pins_them_to():
    """``ATEN_CPU_CAPABILITY`` holds torch's kernels below the machine's (finding 1's jobs run on AVX2 kernels on
    any machine: docs/repro/v2_run.sh); metrics.json records the set the job ran with and the variable that chose it."""
    import subprocess
    import sys

    code = "import json; from dkd.cpu import kernels; print(json.dumps(kernels()))"
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")}
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**env, "ATEN_CPU_CAPABILITY": "default"}).stdout
    assert json.loads(pinned) == {"aten": "DEFAULT", "ATEN_CPU_CAPABILITY": "default"}
