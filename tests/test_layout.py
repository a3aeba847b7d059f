"""The package layout (docs/development.md, "Layout"): who may import whom, no import circle, the paths
found from the package's own file, and the names that modules had before they moved into packages."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dkd.moved import MOVED, current_target, current_targets
from dkd.paths import CONF, ROOT

PACKAGE = ROOT / "dkd"
# helpers anyone may use
PLAIN = {"dkd.errors", "dkd.paths", "dkd.quiet", "dkd.hub", "dkd.moved", "dkd.cpu", "dkd.files"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The DKD modules a file imports, at its top or inside a function (``from dkd.jobs import requeue`` is the
    module ``dkd.jobs.requeue``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "dkd"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import; DKD names its modules in full"
            if (node.module or "").split(".")[0] != "dkd":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES or sub in MOVED else node.module)
    old = found & MOVED.keys()
    assert not old, f"{path} imports {sorted(old)} by the old names: use {[MOVED[o] for o in sorted(old)]}"
    unknown = found - MODULES.keys()
    assert not unknown, f"{path} imports {sorted(unknown)}, which are no modules of dkd/"
    return found - {"dkd"}  # the package's face (its resolvers, the old names) is imported with any module


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def part(module: str) -> str:
    """strategies, jobs, ship, studies, plain, the orchestrator (dkd.run), or the system."""
    if module in PLAIN:
        return "plain"
    if module == "dkd.run":
        return "orchestrator"
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] in ("strategies", "jobs", "ship", "studies") else "system"


# what each part may import besides itself (the rules docs/development.md states)
MAY_IMPORT = {
    "plain": set(),  # not even each other
    "strategies": {"plain"},  # and, inside the package, only the uncertainty measure (below)
    "jobs": {"plain"},
    "system": {"plain", "strategies", "jobs"},
    "ship": {"plain", "system"},
    "orchestrator": {"plain", "strategies", "jobs", "system", "ship"},
    "studies": {"plain", "strategies", "jobs", "system", "ship"},
}


def test_every_module_is_read():
    assert {"dkd.run", "dkd.module", "dkd.strategies.samplers", "dkd.jobs.requeue", "dkd.ship.finished",
            "dkd.studies.verdict"} <= MODULES.keys()
    assert GRAPH["dkd.run"] >= {"dkd.module", "dkd.jobs.requeue", "dkd.ship.compress"}  # the reading finds imports


def test_no_module_imports_a_part_above_its_own():
    broken = [f"{m} ({part(m)}) imports {i} ({part(i)})" for m, targets in GRAPH.items() if m != "dkd"
              for i in targets if (part(i) != part(m) or part(m) == "plain") and part(i) not in MAY_IMPORT[part(m)]]
    assert not broken, "\n".join(broken)


def test_strategies_import_only_the_uncertainty_measure_and_plain_helpers():
    for module, targets in GRAPH.items():
        if part(module) == "strategies":
            assert targets <= PLAIN | {"dkd.strategies.uncertainty"}, (module, targets)


def test_the_system_below_the_orchestrator_never_imports_the_shipping_tools_or_the_studies():
    for module, targets in GRAPH.items():
        if part(module) == "system":
            assert not {t for t in targets if part(t) in ("ship", "studies", "orchestrator")}, (module, targets)


def test_no_import_circle():
    """Depth-first over the whole package: an edge back to a module on the current path closes a circle."""
    on_path, done = [], set()

    def visit(module: str) -> None:
        on_path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            assert target not in on_path, "import circle: " + " -> ".join(on_path[on_path.index(target):] + [target])
            if target not in done:
                visit(target)
        on_path.pop()
        done.add(module)

    for module in MODULES:
        if module not in done:
            visit(module)


# ------------------------------------------------------------------------------------------------ paths
def test_paths_are_found_from_the_package_and_no_module_computes_its_own():
    """conf/ and the checkout are found once (dkd.paths); a module that computed them from its own file would
    point elsewhere after a move (the studies' group lookup skipped keys silently)."""
    assert (CONF / "train.yaml").is_file() and (ROOT / "train.py").is_file() and (PACKAGE / "paths.py").is_file()
    own = [m for m, p in MODULES.items() if m != "dkd.paths" and "__file__" in p.read_text()]
    assert not own, f"modules that find paths from their own file: {own}"


def test_the_tools_that_read_conf_find_it():
    from dkd.provenance import code_version
    from dkd.studies import jobs

    if (ROOT / ".git").exists():  # a checkout (CI's is one), not an installed wheel
        assert code_version() is not None
    assert jobs.group_values("variant", "kd_pt_uncertainty")["weighting._target_"].endswith(
        "UncertaintyWeights")  # through the variant's defaults into conf/weighting


def test_a_study_refuses_a_group_that_conf_does_not_have():
    from dkd.errors import UserError
    from dkd.studies.design import Study
    from dkd.studies.jobs import set_by_choices

    study = Study("t", ("no_such_group",), {"a": {"no_such_group": "x"}})
    with pytest.raises(UserError, match="no_such_group"):
        set_by_choices(study, [{"job": "j", "choices": {"no_such_group": "x"}, "config": {}}])


def test_the_tools_compose_the_config_from_their_new_place(capsys):
    """The benchmark and the sbatch printer compose conf/train.yaml themselves (a wrong folder fails with Hydra's
    missing config)."""
    from hydra.core.global_hydra import GlobalHydra

    from dkd.jobs import cluster
    from dkd.studies import bench

    GlobalHydra.instance().clear()
    assert bench.compose_cfg(["task=mrpc"]).task.name == "mrpc"
    GlobalHydra.instance().clear()
    cluster.main(["hydra.launcher.partition=test"])
    assert "#SBATCH --partition=test" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ old names
def test_every_old_name_is_a_moved_module():
    for old, new in MOVED.items():
        assert old not in MODULES and new in MODULES, (old, new)


def test_an_old_module_name_is_the_moved_module_with_a_notice(caplog):
    import dkd.strategies.samplers

    sys.modules.pop("dkd.samplers", None)
    with caplog.at_level("WARNING", logger="dkd"):
        import dkd.samplers
    assert dkd.samplers is dkd.strategies.samplers
    assert "dkd.samplers moved to dkd.strategies.samplers" in caplog.text


def test_python_m_with_an_old_name_runs_the_new_module_after_one_line():
    done = subprocess.run([sys.executable, "-m", "dkd.report", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m dkd.studies.report" in done.stdout
    assert done.stderr.strip().splitlines() == [
        "dkd.report moved to dkd.studies.report in DKD 0.3; the old name goes in 0.4: use the new one"]


def test_an_old_target_in_a_config_still_instantiates():
    from hydra.utils import instantiate

    from dkd.strategies.weighting import StaticWeights

    assert isinstance(instantiate({"_target_": "dkd.weighting.StaticWeights"}), StaticWeights)


def test_current_target_maps_only_the_moved_modules():
    assert current_target("dkd.samplers.MostUncertain") == "dkd.strategies.samplers.MostUncertain"
    assert current_target("dkd.report.SweepSummary") == "dkd.studies.report.SweepSummary"
    inner = "dkd.report.SweepSummary.on_multirun_end"
    assert current_target(inner) == "dkd.studies.report.SweepSummary.on_multirun_end"
    assert current_target("dkd.compress") == "dkd.ship.compress"
    assert current_target("dkd.reporting.X") == "dkd.reporting.X"  # a prefix of a name is no module name
    assert current_target("dkd.callbacks.InterruptCheckpoint") == "dkd.callbacks.InterruptCheckpoint"
    assert current_target("pytorch_lightning.callbacks.EarlyStopping") == "pytorch_lightning.callbacks.EarlyStopping"
    assert current_targets({"a": [{"_target_": "dkd.adoption.HardSplit"}], "b": "dkd.adoption.HardSplit"}) == {
        "a": [{"_target_": "dkd.strategies.adoption.HardSplit"}], "b": "dkd.adoption.HardSplit"}  # only _target_


def test_the_committed_studies_name_the_old_targets_and_still_group():
    """docs/repro/*.json were saved before the move; each of their jobs reads with today's _target_s."""
    from dkd.studies.jobs import load_jobs

    saved = ROOT / "docs" / "repro" / "objective_sst5.json"
    if not saved.is_file():
        pytest.skip(f"{saved} is not in this checkout")
    assert "dkd.objectives." in saved.read_text()
    targets = {OmegaConf.select(OmegaConf.create(j["config"]), "objective._target_") for j in load_jobs([saved])}
    assert targets and all(t.startswith("dkd.strategies.objectives.") for t in targets)


def test_a_study_mixes_jobs_run_before_and_after_the_move(tmp_path):
    """A job saved with the old _target_s and one with the new ones, the same setting otherwise: one study."""
    from dkd.studies.design import STUDIES
    from dkd.studies.jobs import check_same_setting, load_jobs

    def job(name: str, objective_target: str, seed: int) -> dict:
        return {"job": name, "choices": {"variant": "kd"}, "metrics": {},
                "config": {"seed": seed, "objective": {"_target_": objective_target, "temperature": 1.0}}}

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"jobs": [job("old", "dkd.objectives.LogitKD", 1)]}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"jobs": [job("new", "dkd.strategies.objectives.LogitKD", 2)]}))
    check_same_setting(STUDIES["objective"], load_jobs([old, new]))  # raises if the targets differed


def test_a_checkpoint_names_no_dkd_module_so_one_written_before_the_move_resumes(make_cfg):
    """A distillation's last.ckpt with every strategy that records state (two teachers, selection, alignment,
    weighting) loads with ``weights_only=True``: it pickles tensors and plain containers, no class of DKD, so no module
    name is in it that a move could break."""
    import torch

    from dkd.run import run

    cfg = make_cfg("task=sst2", "keep_last_ckpt=true", "teacher=both", "adoption=soft_instance", "sampler=entropy",
                   "sampler.ratio=0.5", "variant=kd_pt_uncertainty")
    run(cfg)
    checkpoint = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["decisions"] and checkpoint["teacher_outputs"] and checkpoint["hyper_parameters"]
