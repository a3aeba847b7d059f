"""A study's finished jobs: what it reads of each (``metrics.json``, ``.hydra/hydra.yaml``, ``predictions.json`` of
``python -m dkd.ship.evaluate``, the CSV log's decisions), which variant each is, and the checks that they compare:
one setting outside the studied options, the recipe and the seed; the same data, labels and teachers; one evaluation
set per split. Also what the verdicts read of each job: its right answers, whether it predicts one class, its
recipe, its training cost, and the split whose verdicts count."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

from dkd.errors import UserError
from dkd.loggers import decision_curves
from dkd.moved import current_targets
from dkd.paths import CONF
from dkd.studies.design import Study, run_order
from dkd.studies.records import collapsed
from dkd.teachers import FINETUNE_DEFAULTS

# the student's recipe, which design v2's pilot picks per mode (docs/reproduction.md): it may differ between variants,
# never between the seeds of one, and each variant's shows in the tables
RECIPE = ("distill.lr", "distill.epochs")
# options added after jobs a study still reads: the value that does what those jobs did, which a job without the key
# counts as (finetune.*: as the teacher store counts them; distill.scope: one process decides alike either way)
ADDED_LATER = {**{f"finetune.{k}": v for k, v in FINETUNE_DEFAULTS.items()}, "distill.adamw": "auto",
               "distill.warmup_rounding": "floor", "distill.scope": "global", "task.encoding": "utf-8"}
# settings that change where and how a job runs, not what it computes
IGNORED = ("seed", "paths", "task.data_dir", "teacher.dirs", "logger", "hydra", "threads", "compress",
           "trainer.enable_progress_bar", "data.cache_dir", "data.num_workers", "ckpt_path", "keep_last_ckpt",
           "optimized_metric")


def flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _downsample(points: list, most: int = 120) -> list:
    step = max(1, len(points) // most)
    return points[::step]


def _kept(split: dict) -> dict:
    """One split of ``predictions.json`` without the predicted labels (the bootstrap needs right/wrong per example),
    and the number of classes predicted, counted from them where the file does not say it (evaluated before
    ``python -m dkd.ship.evaluate`` wrote it)."""
    kept = {k: v for k, v in split.items() if k != "predictions"}
    if "correct" in split and "predictions" in split:  # a classification's labels; a regression's are numbers
        kept.setdefault("predicted_classes", len(set(split["predictions"])))
    return kept


def read_job(job: Path) -> dict:
    """What a study needs of one finished job folder."""
    import csv

    metrics = json.loads((job / "metrics.json").read_text())
    hydra = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
    record = {"job": str(job), "choices": hydra["runtime"]["choices"], "config": metrics.pop("config"),
              "metrics": {k: v for k, v in metrics.items() if k not in ("teachers",)},
              "teachers": {r: {"dir": Path(t["dir"]).name, "dev": t.get("dev"),
                               **({"weights": t["weights"]} if "weights" in t else {})}
                           for r, t in metrics.get("teachers", {}).items()}}
    if (job / "predictions.json").is_file():
        predictions = json.loads((job / "predictions.json").read_text())
        record["predictions"] = {split: _kept(p) for split, p in predictions.items()}
    log = csv_log(job)
    if log:
        with open(log, newline="") as fh:
            rows = list(csv.DictReader(fh))
        decided = decision_curves(rows[0] if rows else [])
        record["curves"] = {n: _downsample([[int(r["step"]), round(float(r[n]), 4)] for r in rows if r.get(n)])
                            for n in decided}
        terms = [n for n in (rows[0] if rows else []) if n.startswith(("train/kd_", "train/pt_"))]
        first = [r for r in rows if r.get("epoch") in ("0", "0.0")]
        record["first_epoch_terms"] = {  # unweighted per-route loss terms: is the alignment term of any size?
            n: statistics.mean(float(r[n]) for r in first if r.get(n)) for n in terms if any(r.get(n) for r in first)}
    return record


def load_jobs(sources: list[Path]) -> list[dict]:
    """Jobs from multirun folders (every ``*/metrics.json``), job folders, or a saved study JSON; the ``_target_``s of
    jobs run before DKD 0.3 under their current names, so that old and new jobs of one setting compare."""
    return with_current_targets(_read_jobs(sources))


def with_current_targets(jobs: list[dict]) -> list[dict]:
    """The jobs, each with its config's ``_target_``s under their current names (the jobs given are left as they
    are)."""
    return [{**job, "config": current_targets(job["config"])} for job in jobs]


def _read_jobs(sources: list[Path]) -> list[dict]:
    jobs = []
    for source in sources:
        if source.suffix == ".json":
            jobs += json.loads(source.read_text())["jobs"]
        elif (source / "metrics.json").is_file():
            jobs.append(read_job(source))
        else:
            found = sorted(p.parent for p in source.glob("*/metrics.json"))
            if not found:
                raise UserError(f"{source}: no finished job (*/metrics.json), and not a study JSON.")
            jobs += [read_job(j) for j in found]
    return jobs


def _value(job: dict, key: str):
    """A studied key's value in a job: a group's choice, or a config value (distill.train_limit as a share)."""
    if key in job["choices"] and "." not in key:
        return job["choices"][key]
    value = flatten(job["config"]).get(key)
    if key == "distill.train_limit" and value is not None:
        return f"{value / job['metrics']['pool_examples']:.0%} of the pool"
    return value


def csv_log(job: Path) -> Path | None:
    """A job's CSV log (``logger=csv``), the last attempt's where a requeued job has several; None without one."""
    logs = sorted(job.glob("csv/**/metrics.csv"))
    return logs[-1] if logs else None


def variant_of(study: Study, job: dict) -> str:
    values = {k: _value(job, k) for k in study.keys}
    for label, wanted in study.variants.items():
        if all(values.get(k) == v for k, v in wanted.items()):
            return label
    raise UserError(f"{job['job']}: its studied options {values} make no variant of '{study.title}' "
                    f"(known: {', '.join(study.variants)}).")


def group_values(group: str, choice: str) -> dict:
    """The values a config group's choice sets, flattened, with those of the groups its defaults override
    (``variant=kd_pt_uncertainty`` sets the ``objective`` and ``weighting`` groups)."""
    path = CONF / group / f"{choice}.yaml"
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    out = {}
    for entry in data.pop("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if value is not None:
                    out.update(group_values(key.split()[-1].lstrip("/"), value))
    package = "" if text.startswith("# @package _global_") else f"{group}."
    out.update({f"{package}{k}": v for k, v in flatten(data).items()})
    return out


def set_by_choices(study: Study, jobs: list[dict]) -> set[str]:
    """Config keys whose values differ between the studied group choices of these jobs (their group files say so)."""
    varying = set()
    for key in study.keys:
        if "." in key:  # a config value, not a group's choice
            continue
        if not CONF.is_dir():
            raise UserError(f"{CONF}: no such folder. A study reads the config groups of the DKD checkout; run it "
                            f"from a checkout (git clone), not from an installed package alone.")
        if not (CONF / key).is_dir():  # never skipped: the keys its choices set would count as differences
            raise UserError(f"{study.title}: its studied option {key} is no config group of {CONF}.")
        sets = [group_values(key, c) for c in sorted({str(j["choices"].get(key)) for j in jobs}) if c != "None"]
        varying |= {k for k in set().union(*sets) if any(v.get(k) != sets[0].get(k) for v in sets)}
    return varying


def shared(job: dict) -> dict:
    """What every job of a study must share where it has it: the training data's fingerprint, each split's labels,
    and each teacher role's folder, which names its recipe (a refit by the recipe keeps it). The teachers' weights and
    dev scores are shared within a seed (:func:`teacher_sets`). Roles may differ: the combined study varies them."""
    out = {"training data": job["metrics"].get("data")}
    out.update({f"{split} labels": p.get("labels_digest") for split, p in job.get("predictions", {}).items()})
    out.update({f"{role} teacher's folder": t["dir"] for role, t in job.get("teachers", {}).items()})
    return {what: value for what, value in out.items() if value is not None}  # None: not recorded by that job


def _teacher(t: dict) -> dict:
    """One teacher as the pairing compares it: its dev score and the sha256 of its weights (jobs of 55ae3a4 on)."""
    return {"dev": (t.get("dev") or {}).get("dev/score"), "weights": t.get("weights")}


def _conflict(a: dict[str, dict], b: dict[str, dict]) -> tuple[str, str] | None:
    """The first (role, "dev" or "weights") in which two sets of teachers differ where both recorded it; None if they
    agree (a role or value one of them lacks matches anything)."""
    return next(((role, what) for role in a.keys() & b.keys() for what in ("dev", "weights")
                 if None not in (a[role][what], b[role][what]) and a[role][what] != b[role][what]), None)


def _merge(into: dict[str, dict], other: dict[str, dict]) -> None:
    """Adds to ``into`` the roles and values that ``other`` recorded and it lacks."""
    for role, t in other.items():
        mine = into.setdefault(role, {"dev": None, "weights": None})
        mine.update({what: value for what, value in t.items() if mine[what] is None})


def teacher_sets(jobs: list[dict]) -> list[dict]:
    """The teachers each seed's jobs learnt from, grouped: a list of ``{"teachers": {role: {"dev", "weights"}},
    "seeds": [...]}`` in the order of their first seed, one entry unless a teacher was fine-tuned again and moved.

    A refit by the same recipe keeps its folder, and on the same CPU its weights; on another CPU its weights (and
    perhaps its dev score) move. The jobs of one seed are paired, so they must have learnt from the same teachers:
    where two of a seed differ in a teacher's dev score or recorded weights, :class:`UserError` says so (the seed is run
    again whole under one teacher, docs/reproduction.md, "If the teacher is lost"). Seeds may differ: their paired
    differences each stay within one teacher, and the tables show the mean difference per set beside the pooled one.
    What a job did not record (weights, before 55ae3a4) and a role it has not (the combined study's ``teacher=base``
    arms) match anything: within its seed, and across seeds, where a seed joins the first set it agrees with."""
    per_seed: dict[int, dict[str, dict]] = {}
    for job in jobs:
        seed, mine = job["metrics"]["seed"], {role: _teacher(t) for role, t in job.get("teachers", {}).items()}
        known = per_seed.setdefault(seed, {})
        differ = _conflict(known, mine)
        if differ:
            role, what = differ
            # the job of this seed that recorded the value this one contradicts (an earlier one: it is known)
            other = next(j["job"] for j in jobs if j["metrics"]["seed"] == seed
                         and _teacher(j.get("teachers", {}).get(role, {}))[what] == known[role][what])
            name = "dev score" if what == "dev" else "weights' sha256"
            raise UserError(
                f"seed {seed}: {job['job']} and {other} learnt from different {role} "
                f"teachers ({name} {mine[role][what]} vs {known[role][what]}). A seed's jobs are compared in pairs, "
                f"so they must share their teachers: run the seed again whole under one teacher, or leave out the "
                f"jobs of the other (docs/reproduction.md, \"If the teacher is lost\").")
        _merge(known, mine)
    sets: list[dict] = []
    for seed in run_order(per_seed):
        entry = next((s for s in sets if _conflict(s["teachers"], per_seed[seed]) is None), None)
        if entry is None:
            sets.append(entry := {"teachers": {}, "seeds": []})
        _merge(entry["teachers"], per_seed[seed])
        entry["seeds"].append(seed)
    return sets


def check_same_setting(study: Study, jobs: list[dict]) -> None:
    """Every job's config equals the first's outside the studied options (and the keys their choices set), the
    recipe (:data:`RECIPE`, checked per variant by :func:`recipe_of`), the seed and the run-only settings; a key an
    older job lacks counts as its value in :data:`ADDED_LATER`; and they share what :func:`shared` names (the jobs
    of each seed their teachers too: :func:`teacher_sets`)."""
    skip = (*IGNORED, *RECIPE, *study.keys)
    chosen = set_by_choices(study, jobs)

    def rest(job: dict) -> dict:
        return {k: v for k, v in {**ADDED_LATER, **flatten(job["config"])}.items()
                if k not in chosen and not any(k == s or k.startswith(f"{s}.") for s in skip)}

    known: dict[str, tuple] = {}  # what must be the same for every job that has it → (its value, the first job's name)
    for job in jobs:
        for what, value in shared(job).items():
            value0, job0 = known.setdefault(what, (value, job["job"]))
            if value != value0:
                raise UserError(f"{job['job']} and {job0} differ in their {what}: {value} vs {value0}. A study "
                                f"compares students of the same data, and of teachers fine-tuned by one recipe (a "
                                f"teacher's folder names its recipe).")
    first = rest(jobs[0])
    for job in jobs[1:]:
        other = rest(job)
        diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if diff:
            shown = "; ".join(f"{k}: {first.get(k)!r} vs {other.get(k)!r}" for k in diff[:6])
            raise UserError(f"{job['job']} differs from {jobs[0]['job']} in more than the studied options "
                            f"({', '.join(study.keys)}) and the seed: {shown}. Report them as separate studies.")


def right_answers(job: dict, split: str) -> list[bool] | None:
    """Per example, right or wrong (a classification task's predictions against the labels of that split)."""
    pred = job.get("predictions", {}).get(split)
    return None if pred is None else pred.get("correct")


def collapsed_on(job: dict, split: str) -> bool | None:
    """Whether the job's model predicts one class on ``split`` (None: not recorded). Counted by
    ``python -m dkd.ship.evaluate`` from its per-example predictions, else (on dev) by the run itself, else recovered
    from its right answers and the labels (:mod:`dkd.studies.backfill`, jobs run before either count)."""
    record = job.get("predictions", {}).get(split, {})
    if record.get("predicted_classes") is not None:
        return record["predicted_classes"] == 1
    counted = collapsed(job["metrics"]) if split == "dev" else None
    return counted if counted is not None else record.get("one_class")  # a count before an inference


def recipe_of(label: str, jobs: list[dict]) -> dict:
    """The recipe (:data:`RECIPE`) and precision the jobs of one variant share: a variant trained two ways is two
    arms, not one."""
    seen: dict[tuple, str] = {}
    for job in jobs:
        flat = flatten(job["config"])
        seen.setdefault(tuple(flat.get(k) for k in (*RECIPE, "trainer.precision")), job["job"])
    if len(seen) > 1:
        shown = "; ".join(f"{', '.join(f'{k}={v}' for k, v in zip((*RECIPE, 'trainer.precision'), key))} "
                          f"({name})" for key, name in seen.items())
        raise UserError(f"The jobs of variant '{label}' were trained by different recipes ({shown}). One variant is "
                        f"one recipe: report them as separate studies, or leave the odd ones out.")
    (key,) = seen
    return dict(zip((*RECIPE, "trainer.precision"), key))


def verdict_split(jobs: list[dict]) -> str:
    """Test where every job carries its test predictions (SST-5: dev only chose the checkpoints), else dev."""
    return "test" if all("test" in j.get("predictions", {}) for j in jobs) else "dev"


def gflops_per_instance(job: dict) -> float | None:
    """Training GFLOPs (the method's count: teacher forwards asked, cache hits included) per instance of the pool
    per epoch, the paper's unit; a student trained on a subset is charged over the whole pool, as the paper's
    per-instance figures."""
    run = gflops_per_instance_run(job)
    return None if run is None else run * job["metrics"]["train_examples"] / job["metrics"]["flops"]["examples"]


def gflops_per_instance_run(job: dict) -> float | None:
    """Training GFLOPs per instance of the pool over the whole run (every epoch): what arms trained for different
    epochs (a subset or a pool at 10 x the epochs of per-batch selection) compare by."""
    flops = job["metrics"].get("flops")
    return flops["gflops"]["total"] / job["metrics"]["pool_examples"] if flops else None


def check_same_examples(jobs: list[dict]) -> None:
    """On each split, every job that kept its per-example answers answered as many examples: the two-level bootstrap
    pairs them by position."""
    for split in ("dev", "test"):
        jobs_of: dict[int, list[str]] = {}
        for job in jobs:
            correct = right_answers(job, split)
            if correct is not None:
                jobs_of.setdefault(len(correct), []).append(job["job"])
        if len(jobs_of) > 1:
            shown = "; ".join(f"{n} examples: {', '.join(names)}" for n, names in sorted(jobs_of.items()))
            raise UserError(f"The jobs answered different numbers of {split} examples ({shown}). A study's jobs are "
                            f"evaluated on one {split} set: evaluate them again (python -m dkd.ship.evaluate) on it.")
