"""The reproduction report's studies: which variants a study compares, which claims of the paper it tests, and how
its tables and plots are made from the runs
(``python -m dkd.studies.report --study <name> <multirun folders or JSON>``).

A study reads finished jobs (their ``metrics.json``, ``.hydra/hydra.yaml`` and, from ``python -m dkd.ship.evaluate``,
``predictions.json``), refuses jobs whose configs differ in anything but the studied options and the seed, names
each job's variant, and tests each claim by the paired rule of :mod:`dkd.studies.verdict`. A study is one finding
of the paper (or one check of ours); on each split its claims with a verdict there (both arms with two or more paired
seeds) are one family for Holm's correction. ``--save`` keeps what the tables and plots need as one JSON under docs/,
so that they can be rebuilt without the outputs.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from dkd.errors import UserError
from dkd.moved import current_targets
from dkd.paths import CONF
from dkd.studies.records import collapsed, mean_std
from dkd.studies.verdict import ALPHA, DELTA, KINDS, NotFinite, paired_difference, two_level_bootstrap, verdicts
from dkd.teachers import FINETUNE_DEFAULTS

DECISIONS = ("train/sampler_", "train/adoption_", "train/weighting_")  # what the strategies decided, per step
# settings that change where and how a job runs, not what it computes
# the student's recipe, which design v2's pilot picks per mode (docs/reproduction.md): it may differ between variants,
# never between the seeds of one, and each variant's shows in the tables
RECIPE = ("distill.lr", "distill.epochs")
# options added after jobs a study still reads: the value that does what those jobs did, which a job without the key
# counts as (finetune.*: as the teacher store counts them; distill.scope: one process decides alike either way)
ADDED_LATER = {**{f"finetune.{k}": v for k, v in FINETUNE_DEFAULTS.items()}, "distill.adamw": "auto",
               "distill.warmup_rounding": "floor", "distill.scope": "global", "task.encoding": "utf-8"}
IGNORED = ("seed", "paths", "task.data_dir", "teacher.dirs", "logger", "hydra", "threads", "compress",
           "trainer.enable_progress_bar", "data.cache_dir", "data.num_workers", "ckpt_path", "keep_last_ckpt",
           "optimized_metric")


@dataclass(frozen=True)
class Claim:
    """``variant`` − ``baseline`` tested by :func:`dkd.studies.verdict.verdicts` as ``kind`` (higher, keeps, differ,
    same) with the smallest effect of interest ``delta``."""

    name: str
    variant: str
    baseline: str
    says: str
    kind: str = "higher"
    delta: float = DELTA

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.name} ({self.variant} − {self.baseline}): kind={self.kind!r}, not one of "
                             f"{', '.join(KINDS)}")


@dataclass(frozen=True)
class Study:
    """``keys``: the studied options (a config group's choice, or a dotted key); ``variants``: label → the values of
    those keys that make it (None: the key left at its default of null); ``setting``: what the variants' labels leave
    unsaid, for the verdict table."""

    title: str
    keys: tuple[str, ...]
    variants: dict[str, dict]
    claims: tuple[Claim, ...] = ()
    paper: dict[str, str] = field(default_factory=dict)
    curves: tuple[str, ...] = ()  # logged decisions plotted over training (one seed per variant)
    setting: str = ""

    def __post_init__(self):
        seen = [(c.variant, c.baseline, c.kind) for c in self.claims]
        twice = sorted({x for x in seen if seen.count(x) > 1})
        if twice:  # one comparison counted twice in a Holm family
            raise ValueError(f"{self.title}: claims given twice (variant, baseline, kind): {twice}")


MODES = (("efficient", 1, ""), ("efficient", 10, " (pool 10)"), ("faithful", 1, " (faithful)"))


def _selection() -> Study:
    full = {"sampler": "none", "distill.train_limit": None}
    variants = {"full KD": full}
    for r in (0.1, 0.5):
        variants[f"fixed random {r:.0%} subset"] = {"sampler": "none", "distill.train_limit": f"{r:.0%} of the pool"}
        for name in ("random", "entropy", "margin", "least_confidence"):
            for mode, pool, tail in MODES:
                variants[f"{name} r={r}{tail}"] = {"sampler": name, "sampler.ratio": r, "sampler.mode": mode,
                                                   "sampler.pool": pool, "distill.train_limit": None}
    claims = []
    for r in (0.1, 0.5):
        for _, _, tail in MODES:
            for m in ("entropy", "margin", "least_confidence"):
                v = f"{m} r={r}{tail}"
                claims += [Claim("2a", v, "full KD", "keeps accuracy within 1 point of full KD", "keeps"),
                           Claim("2b", v, f"random r={r}{tail}", "beats random selection")]
            claims += [Claim("2d", f"{a} r={r}{tail}", f"{b} r={r}{tail}", "the measures differ", "differ")
                       for a, b in (("entropy", "margin"), ("entropy", "least_confidence"),
                                    ("margin", "least_confidence"))]
        claims.append(Claim("2c", f"entropy r={r}", f"fixed random {r:.0%} subset",
                            "selecting per batch beats a fixed random subset of the same share"))
    paper = {  # Table 4 of the paper: augmented data, r = 0.1, BERT-base teacher, 6-layer BERT student (SST-5 acc)
        "full KD": "51.4 (TinyBERT full KD; 24.9 GFLOPs)", "random r=0.1": "51.1 (2.49 GFLOPs)",
        "entropy r=0.1": "51.5 (4.65 GFLOPs)", "margin r=0.1": "51.6 (4.65 GFLOPs)",
        "least_confidence r=0.1": "51.2 (4.65 GFLOPs)"}
    return Study("Finding 2: data selection", ("sampler", "sampler.ratio", "sampler.mode", "sampler.pool",
                                               "distill.train_limit"), variants, tuple(claims), paper,
                 ("train/sampler_u_selected", "train/sampler_u_all"),
                 "efficient mode unless marked (faithful: the authors' mode; pool 10: k rows of 10 batches)")


def _adoption() -> Study:
    names = ("smallest", "largest", "ensemble", "hard", "soft", "soft_instance")
    variants = {n: {"adoption": n} for n in names}
    claims = [Claim("1a", n, single, f"adoption beats the {single} teacher alone")
              for n in ("hard", "soft", "soft_instance") for single in ("smallest", "largest")]
    claims.append(Claim("1b", "smallest", "largest", "the smaller teacher's student beats the larger's "
                                                     "(read only if the larger teacher is the better teacher)"))
    paper = {"hard": "CoLA 42.7 MCC, RTE 66.9 (BERT-base + BERT-large teachers)"}
    return Study("Finding 1: teacher adoption", ("adoption",), variants, tuple(claims), paper,
                 ("train/adoption_weight_large", "train/adoption_share_large"))


def _objective() -> Study:
    names = ("kd", "kd_uncertainty", "kd_pt", "kd_pt_uncertainty", "kd_pt_uncertainty_r")
    claims = (Claim("3", "kd_pt_uncertainty", "kd_pt", "weighting KD against alignment by u beats fixed weights"),
              Claim("3", "kd_pt_uncertainty", "kd_pt_uncertainty_r", "the paper's direction beats the reverse"),
              Claim("3", "kd_uncertainty", "kd", "u-weighted logit KD beats plain KD"))
    return Study("Finding 3: objective adaptation", ("variant",), {n: {"variant": n} for n in names}, claims,
                 curves=("train/weighting_u", "train/weighting_pt"),
                 setting="full KD, logit KD + [CLS] alignment")


def _combined() -> Study:
    static = {"sampler": "none", "adoption": "single", "variant": "kd"}
    variants = {"static KD": static, "selection alone": {**static, "sampler": "entropy"},
                "adoption alone": {**static, "adoption": "soft_instance"},
                "objective alone": {**static, "variant": "kd_pt_uncertainty"},
                "combined": {"sampler": "entropy", "adoption": "soft_instance", "variant": "kd_pt_uncertainty"}}
    claims = tuple(Claim("combined", "combined", v, "the three strategies together beat each alone")
                   for v in ("selection alone", "adoption alone", "objective alone", "static KD"))
    return Study("The combined run", ("sampler", "adoption", "variant", "teacher"), variants, claims)


def _precision() -> Study:
    """bf16 against fp32 on the CPU (docs/results.md, issue 27): the same students within a point?"""
    methods = {"full KD": {"sampler": "none"}, "entropy r=0.1": {"sampler": "entropy"}}
    variants = {f"{m} {name}": {**keys, "trainer.precision": p} for m, keys in methods.items()
                for name, p in (("fp32", 32), ("bf16", "bf16-mixed"))}
    claims = tuple(Claim("bf16", f"{m} bf16", f"{m} fp32", "bf16 trains the student fp32 trains, within 1 point",
                         "same") for m in methods)
    return Study("bf16 against fp32 on the CPU", ("sampler", "trainer.precision"), variants, claims)


STUDIES = {"selection": _selection(), "adoption": _adoption(), "objective": _objective(), "combined": _combined(),
           "precision": _precision()}


# ------------------------------------------------------------------------------------------------ reading jobs
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
              "teachers": {r: {"dir": Path(t["dir"]).name, "dev": t.get("dev")}
                           for r, t in metrics.get("teachers", {}).items()}}
    if (job / "predictions.json").is_file():
        predictions = json.loads((job / "predictions.json").read_text())
        record["predictions"] = {split: _kept(p) for split, p in predictions.items()}
    logs = sorted(job.glob("csv/**/metrics.csv"))
    if logs:
        with open(logs[-1], newline="") as fh:
            rows = list(csv.DictReader(fh))
        decided = [n for n in (rows[0] if rows else []) if n.startswith(DECISIONS)]
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
    return [{**job, "config": current_targets(job["config"])} for job in _read_jobs(sources)]


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
    and each teacher role's folder and dev score (a teacher fine-tuned again by its recipe keeps its folder name,
    not its score; named by ``teacher.dirs`` or found by its recipe, it is the same teacher). Roles may differ: the
    combined study varies them."""
    out = {"training data": job["metrics"].get("data")}
    out.update({f"{split} labels": p.get("labels_digest") for split, p in job.get("predictions", {}).items()})
    out.update({f"{role} teacher (folder, dev score)": (t["dir"], (t.get("dev") or {}).get("dev/score"))
                for role, t in job.get("teachers", {}).items()})
    return {what: value for what, value in out.items() if value is not None}  # None: not recorded by that job


def check_same_setting(study: Study, jobs: list[dict]) -> None:
    """Every job's config equals the first's outside the studied options (and the keys their choices set), the
    recipe (:data:`RECIPE`, checked per variant by :func:`recipe_of`), the seed and the run-only settings; a key an
    older job lacks counts as its value in :data:`ADDED_LATER`; and they share what :func:`shared` names."""
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
                                f"compares students of the same data and teachers.")
    first = rest(jobs[0])
    for job in jobs[1:]:
        other = rest(job)
        diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if diff:
            shown = "; ".join(f"{k}: {first.get(k)!r} vs {other.get(k)!r}" for k in diff[:6])
            raise UserError(f"{job['job']} differs from {jobs[0]['job']} in more than the studied options "
                            f"({', '.join(study.keys)}) and the seed: {shown}. Report them as separate studies.")


# ------------------------------------------------------------------------------------------------ tables
def _correct(job: dict, split: str) -> list[bool] | None:
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
    per epoch; a student trained on a subset is charged over the whole pool, as the paper's per-instance figures."""
    flops, m = job["metrics"].get("flops"), job["metrics"]
    if not flops:
        return None
    epochs = flops["examples"] / m["train_examples"]
    return flops["gflops"]["total"] / (m["pool_examples"] * epochs)


def check_same_examples(jobs: list[dict]) -> None:
    """On each split, every job that kept its per-example answers answered as many examples: the two-level bootstrap
    pairs them by position."""
    for split in ("dev", "test"):
        jobs_of: dict[int, list[str]] = {}
        for job in jobs:
            correct = _correct(job, split)
            if correct is not None:
                jobs_of.setdefault(len(correct), []).append(job["job"])
        if len(jobs_of) > 1:
            shown = "; ".join(f"{n} examples: {', '.join(names)}" for n, names in sorted(jobs_of.items()))
            raise UserError(f"The jobs answered different numbers of {split} examples ({shown}). A study's jobs are "
                            f"evaluated on one {split} set: evaluate them again (python -m dkd.ship.evaluate) on it.")


def summarise(study: Study, jobs: list[dict]) -> dict:
    """Per variant: seeds, metrics, cost, which jobs collapsed; per claim and split: the paired t interval, the
    two-level bootstrap, the collapse flag and the verdict (:func:`dkd.studies.verdict.verdicts`), or ``not tested``
    where fewer than two seeds pair. ``families``: per split, how many claims have a verdict there, the Holm family
    they are corrected in. ``verdict_split``: the split whose verdicts count."""
    check_same_setting(study, jobs)
    check_same_examples(jobs)
    by_variant: dict[str, dict[int, dict]] = {}
    for job in jobs:
        seeds = by_variant.setdefault(variant_of(study, job), {})
        seed = job["metrics"]["seed"]
        if seed in seeds:
            raise UserError(f"{job['job']} and {seeds[seed]['job']} are the same variant and seed: give each once.")
        seeds[seed] = job
    order = [v for v in study.variants if v in by_variant]
    variants = {}
    for label in order:
        seeds = by_variant[label]
        dev = {s: j["metrics"]["dev"]["dev/score"] for s, j in seeds.items()}
        test = {s: j["predictions"]["test"]["metrics"]["test/acc"] for s, j in seeds.items()
                if "test" in j.get("predictions", {})}
        cost = [gflops_per_instance(j) for j in seeds.values()]
        variants[label] = {
            "seeds": sorted(dev), "dev": dev, "test": test,
            "collapsed": {split: {s: collapsed_on(seeds[s], split) for s in sorted(scores)}
                          for split, scores in (("dev", dev), ("test", test))},
            "gflops_per_instance": statistics.mean(c for c in cost if c is not None) if any(cost) else None,
            "wall_min": statistics.mean(j["metrics"]["wall_time_s"] for j in seeds.values()) / 60,
            "examples_per_s": statistics.mean(j["metrics"]["train_examples_per_s"] or 0 for j in seeds.values()),
            "selected": statistics.mean(j["metrics"]["decisions"].get("sampler_selected", 1.0)
                                        for j in seeds.values()),
            "paper": study.paper.get(label, ""), "recipe": recipe_of(label, list(seeds.values())),
            "first_epoch_terms": _mean_terms([j.get("first_epoch_terms", {}) for j in seeds.values()]),
            "alpha": {k: flatten(next(iter(seeds.values()))["config"]).get(f"weighting.{k}")
                      for k in ("alpha_kd", "alpha_pt")}}
    claims, families = [], {"dev": [], "test": []}  # per split, the claims with a verdict there: one Holm family
    for c in study.claims:
        if c.variant not in variants or c.baseline not in variants:
            continue
        row = {"claim": c.name, "says": c.says, "variant": c.variant, "baseline": c.baseline, "kind": c.kind,
               "delta": c.delta}
        for split in ("dev", "test"):
            a, b = variants[c.baseline][split], variants[c.variant][split]
            seeds = sorted(set(a) & set(b))
            if len(seeds) < 2:
                row[split] = {"n": len(seeds), "verdict": "not tested"}
                continue
            try:
                p = paired_difference(a, b)
            except NotFinite as err:
                named = "; ".join(f"seed {s}: {by_variant[c.baseline][s]['job']} and {by_variant[c.variant][s]['job']}"
                                  for s in err.seeds)
                raise UserError(f"{study.title}, claim {c.name} ({c.variant} − {c.baseline}) on {split}: {err}. "
                                f"The jobs ({named}) have a metric that is NaN or infinite: rerun or leave them out."
                                ) from err
            low, high = p.interval()
            fell = {arm: [s for s in seeds if variants[label]["collapsed"][split][s]]
                    for arm, label in (("variant", c.variant), ("baseline", c.baseline))}
            unknown = any(variants[label]["collapsed"][split][s] is None
                          for label in (c.variant, c.baseline) for s in seeds)
            row[split] = {"n": p.n, "mean": p.mean, "low": low, "high": high, "constant": p.se == 0, "collapsed": fell,
                          # a flag: an arm predicts one class in a paired seed (None: not recorded, none seen)
                          "collapse": True if fell["variant"] or fell["baseline"] else None if unknown else False}
            base = [_correct(by_variant[c.baseline][s], split) for s in seeds]
            var = [_correct(by_variant[c.variant][s], split) for s in seeds]
            if all(x is not None for x in base + var):
                row[split]["bootstrap"] = two_level_bootstrap(base, var)
            families[split].append((row[split], p, c))
        claims.append(row)
    for family in filter(None, families.values()):
        for (cell, _, _), v in zip(family, verdicts([(p, c.kind, c.delta) for _, p, c in family])):
            cell.update(asdict(v))
    teachers = {r: t["dev"] for r, t in jobs[0]["teachers"].items()}
    return {"title": study.title, "variants": variants, "claims": claims, "teachers": teachers,
            "verdict_split": verdict_split(jobs), "families": {split: len(f) for split, f in families.items()},
            "commits": sorted({(j["metrics"].get("code") or {}).get("commit", "unrecorded")[:7] for j in jobs}),
            "task": jobs[0]["metrics"]["task"]}


def _mean_terms(per_job: list[dict]) -> dict[str, float]:
    names = set().union(*per_job) if per_job else set()
    return {n: statistics.mean(t[n] for t in per_job if n in t) for n in sorted(names)}


def _collapse_rate(flags: dict) -> str:
    """Collapsed jobs / jobs of one variant on one split, saying how many were not recorded."""
    if not flags:
        return "–"
    known = [f for f in flags.values() if f is not None]
    if not known:
        return "not recorded"
    rate = f"{sum(known)}/{len(known)}"
    return rate if len(known) == len(flags) else f"{rate} ({len(flags) - len(known)} not recorded)"


def _collapse_flag(r: dict) -> str:
    """A claim's flag on one split: which arm predicts one class in which paired seeds."""
    if r["collapse"] is None:
        return "not recorded"
    if not r["collapse"]:
        return "no"
    seeds = [f"{arm} {', '.join(map(str, r['collapsed'][arm]))}" for arm in ("baseline", "variant")
             if r["collapsed"][arm]]
    return f"**yes**: {'; '.join(seeds)}"


def _gloss(r: dict, kind: str, delta: float) -> str:
    """What a refuted claim's interval excludes, and a gain shown to be below δ (verdict.py's table)."""
    size = f"{100 * delta:g} point" + ("" if f"{100 * delta:g}" == "1" else "s")
    if r["below_delta"]:
        return f": higher, by less than {size}"
    if r["verdict"] != "refuted":
        return ""
    return ": " + {"higher": f"no gain of {size} or more", "keeps": f"more than {size} lower",
                   "differ": f"within ±{size}", "same": f"more than {size} apart"}[kind]


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _deciding(r: dict) -> str:
    """The Holm-adjusted p of the test that decided the claim, against its level; both tests where neither did."""
    def test(side: str, sign: str) -> str:
        return f"{side} {_p(r[f'holm_{side}'])} {sign} {r[f'level_{side}']:g}"

    if r["verdict"] == "confirmed":
        return test("confirm", "<")
    if r["verdict"] == "refuted":
        return test("refute", "<")
    return f"{test('confirm', '≥')}; {test('refute', '≥')}"


def _recipe(recipe: dict) -> str:
    return f"{recipe['distill.lr']:g}, {recipe['distill.epochs']}"


def _precisions(summary: dict) -> str:
    """The studied variants' training precision (fp32: Lightning's 32 and 32-true, and no key in older jobs)."""
    named = {str(v["recipe"]["trainer.precision"]) for v in summary["variants"].values()}
    return ", ".join(sorted("fp32" if p in ("32", "32-true", "None") else p for p in named))


def markdown(summary: dict) -> str:
    pts = lambda x: f"{100 * x:+.2f}"  # noqa: E731 - differences in points
    span = lambda lo, hi: f"[{pts(lo)}, {pts(hi)}]"  # noqa: E731
    acc = lambda xs: "–" if not xs else (lambda m, s: f"{100 * m:.2f} ± {100 * s:.2f}")(*mean_std(list(xs)))  # noqa
    teachers = ", ".join(f"{r} {100 * t['dev/score']:.2f}" for r, t in summary["teachers"].items())
    split = summary["verdict_split"]
    lines = [f"### {summary['title']} — {summary['task']}", "",
             f"Teacher dev score: {teachers}. Precision: {_precisions(summary)}. Commits: "
             f"{', '.join(summary['commits'])}.", "",
             "| variant | seeds | student lr, epochs | dev (mean ± std) | test (mean ± std) | one class: dev | "
             "one class: test | rows distilled | GFLOPs / instance | wall min / run | train ex/s | "
             "paper (setting differs, see text) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, v in summary["variants"].items():
        g = "–" if v["gflops_per_instance"] is None else f"{v['gflops_per_instance']:.3f}"
        lines.append(f"| {label} | {len(v['seeds'])} | {_recipe(v['recipe'])} | {acc(v['dev'].values())} | "
                     f"{acc(v['test'].values())} | "
                     f"{_collapse_rate(v['collapsed']['dev'])} | {_collapse_rate(v['collapsed']['test'])} | "
                     f"{v['selected']:.3f} | {g} | {v['wall_min']:.1f} | {v['examples_per_s']:.1f} | {v['paper']} |")
    why = "dev only chose the checkpoints" if split == "test" else "the jobs carry no test predictions"
    other = ["dev: d [95% t]"] if split == "test" else []
    header = ["claim", "variant − baseline", "kind (δ, points)", "n", "d", "95% t interval (unadjusted)",
              "two-level bootstrap (95%, unadjusted)", "Holm-adjusted p of the deciding test", "verdict",
              "one class in a paired seed", *other]
    m = summary["families"][split]
    lines += ["", f"Verdicts on **{split}** ({why}): d = variant − baseline in points over the paired seeds. Each "
                  f"verdict is decided by Holm-adjusted p-values over the {m} claim{'' if m == 1 else 's'} of this "
                  f"study with a verdict on {split} (one family), each test against its level: {ALPHA / 2:g} "
                  f"one-sided, {ALPHA:g} two-sided (differ's confirm, same's refute), which for one claim alone is "
                  "the rule of the 95% t interval; the intervals shown are not adjusted.", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    untested = "not tested (n < 2)"
    for c in summary["claims"]:
        r = c[split]
        if r["verdict"] == "not tested":
            cells = [str(r["n"]), "–", "–", "–", "–", untested, "–"]
        else:
            b = r.get("bootstrap")
            verdict = f"**{r['verdict']}**" + _gloss(r, c["kind"], c["delta"])
            d = pts(r["mean"]) + (" (d constant over seeds)" if r["constant"] else "")
            cells = [str(r["n"]), d, span(r["low"], r["high"]), "–" if b is None else span(*b), _deciding(r),
                     verdict, _collapse_flag(r)]
        if other:
            dev = c["dev"]
            cells.append(untested if dev["verdict"] == "not tested"
                         else f"{pts(dev['mean'])} {span(dev['low'], dev['high'])}")
        lines.append(f"| {c['claim']}: {c['says']} | {c['variant']} − {c['baseline']} | "
                     f"{c['kind']} ({100 * c['delta']:g}) | " + " | ".join(cells) + " |")
    sized = {label: v for label, v in summary["variants"].items()
             if any(n.startswith("train/pt_") for n in v.get("first_epoch_terms", {}))}
    if sized:  # the alignment term beside the KD term, as the loss weighs them (α · unweighted mean, epoch 0)
        lines += ["", "Loss terms over the first epoch (mean over seeds and steps, before the per-row weights):", "",
                  "| variant | KD term | alignment term | α_kd · KD | α_pt · alignment |", "|---|---|---|---|---|"]
        for label, v in sized.items():
            t, a = v["first_epoch_terms"], v["alpha"]
            kd = statistics.mean(x for n, x in t.items() if n.startswith("train/kd_"))
            pt = statistics.mean(x for n, x in t.items() if n.startswith("train/pt_"))
            lines.append(f"| {label} | {kd:.4f} | {pt:.5f} | {a['alpha_kd'] * kd:.4f} | {a['alpha_pt'] * pt:.4f} |")
    return "\n".join(lines) + "\n"


def ratio_curves(study: Study, summary: dict) -> dict[str, list[tuple[float, float, float]]]:
    """Per selection measure (efficient mode, pool 1): (r, mean, std) of the dev metric, full KD at r = 1."""
    curves: dict[str, list] = {}
    full = summary["variants"].get("full KD")
    for label, v in summary["variants"].items():
        spec = study.variants[label]
        if "sampler.ratio" in spec and spec["sampler.mode"] == "efficient" and spec["sampler.pool"] == 1:
            curves.setdefault(spec["sampler"], []).append((spec["sampler.ratio"], *mean_std(list(v["dev"].values()))))
    for points in curves.values():
        if full:
            points.append((1.0, *mean_std(list(full["dev"].values()))))
        points.sort()
    return {k: v for k, v in curves.items() if len(v) > 1}


def plot(summary: dict, jobs: list[dict], png: Path, study: Study) -> Path:
    """Dev metric against training GFLOPs per instance and against wall time (mean ± std over seeds); the study's
    decisions over training (one seed per variant); the dev metric against the selection ratio where r varies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    ratios = ratio_curves(study, summary)
    colour = {label: f"C{i % 10}" for i, label in enumerate(summary["variants"])}  # one colour a variant, every panel
    for label in summary["variants"]:  # a ratio curve takes the colour of its measure's first variant
        colour.setdefault(study.variants[label].get("sampler", label), colour[label])
    fig, axes = plt.subplots(1, 4 if ratios else 3, figsize=(22 if ratios else 17, 4.8))
    for label, v in summary["variants"].items():
        mean, std = mean_std(list(v["dev"].values()))
        for ax, x in ((axes[0], v["gflops_per_instance"]), (axes[1], v["wall_min"])):
            if x is not None:
                ax.errorbar(x, 100 * mean, yerr=100 * std, fmt="o", capsize=3, label=label, color=colour[label])
    axes[0].set(xlabel="training GFLOPs per pool instance per epoch (our count)", ylabel="dev accuracy (%)",
                title=f"{summary['task']}: accuracy vs compute (mean ± std over seeds)", xscale="log")
    axes[1].set(xlabel="wall time per run (min, 1 CPU thread)", ylabel="dev accuracy (%)",
                title="accuracy vs wall time")
    axes[0].legend(fontsize=7)
    axes[0].xaxis.set_minor_formatter(NullFormatter())  # log axis: label the decades only
    seeds = {j["metrics"]["seed"] for j in jobs}
    first = 42 if 42 in seeds else min(seeds)
    for job in jobs:
        curves = job.get("curves", {})
        if job["metrics"]["seed"] != first:
            continue
        label = variant_of(study, job)
        for name, style in zip(study.curves, ("-", ":", "--")):
            if curves.get(name):
                axes[2].plot(*zip(*curves[name]), style, linewidth=1, color=colour[label],
                             label=f"{label}: {name.removeprefix('train/')}")
    axes[2].set(xlabel="step", ylabel="value per step", title=f"decisions over training (seed {first})")
    if axes[2].lines:
        axes[2].legend(fontsize=6)
    if ratios:
        for name, points in ratios.items():
            r, mean, std = zip(*points)
            axes[3].errorbar(r, [100 * m for m in mean], yerr=[100 * s for s in std], marker="o", capsize=3,
                             label=name, color=colour.get(name))
        axes[3].set(xlabel="selection ratio r (1 = full KD)", ylabel="dev accuracy (%)", xscale="log",
                    title="accuracy vs selection ratio")
        axes[3].legend(fontsize=7)
        axes[3].xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


VERDICT_COLOURS = {"confirmed": "tab:green", "refuted": "tab:red", "unresolved": "tab:gray"}


def plot_claims(summary: dict, png: Path) -> Path:
    """One row per claim with a verdict on the verdict split: the paired difference d̄ with its 95% t interval (thick)
    and the two-level bootstrap (thin), coloured by the Holm verdict, against 0 and the ±δ band; a hollow marker where
    an arm predicts one class in a paired seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = summary["verdict_split"]
    rows = [c for c in summary["claims"] if c[split]["verdict"] != "not tested"]
    if not rows:
        raise UserError(f"{summary['title']}: no claim has two or more paired seeds on {split}; nothing to plot.")
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    delta = 100 * max(c["delta"] for c in rows)
    ax.axvspan(-delta, delta, color="0.92", zorder=0, label=f"±δ = {delta:g} point")
    ax.axvline(0, color="0.4", linewidth=0.8)
    for y, c in enumerate(reversed(rows)):
        r = c[split]
        colour = VERDICT_COLOURS[r["verdict"]]
        ax.plot([100 * r["low"], 100 * r["high"]], [y, y], color=colour, linewidth=3.5, solid_capstyle="butt")
        if r.get("bootstrap"):  # just under the t interval, so that neither hides the other
            ax.plot([100 * x for x in r["bootstrap"]], [y - 0.22] * 2, color="0.2", linewidth=1)
        ax.plot(100 * r["mean"], y, "o", color=colour, markerfacecolor="white" if r["collapse"] else colour,
                markersize=7)
    ax.set_yticks(range(len(rows)), [f"{c['claim']}: {c['variant']} − {c['baseline']} ({c['kind']})"
                                     for c in reversed(rows)], fontsize=8)
    handles = [plt.Line2D([], [], color=col, linewidth=3.5, label=v) for v, col in VERDICT_COLOURS.items()]
    handles += [plt.Line2D([], [], color="0.2", linewidth=1, label="two-level bootstrap"),
                plt.Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="",
                           label="an arm predicts one class")]
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1), title="95% t interval, Holm verdict", title_fontsize=7)
    ax.set(xlabel=f"d = variant − baseline on {split} (accuracy points, paired seeds)",
           title=f"{summary['title']} — {summary['task']}: {len(rows)} claims")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def report(name: str, sources: list[Path], save: Path | None = None, png: Path | None = None) -> str:
    """The study's Markdown (tables and verdicts); ``save``: its jobs as one JSON; ``png``: its plot, and beside it
    (``<png>_claims.png``) the claims' paired differences (:func:`plot_claims`)."""
    if name not in STUDIES:
        raise UserError(f"--study {name}: known studies are {', '.join(STUDIES)}.")
    study = STUDIES[name]
    jobs = load_jobs(sources)
    summary = summarise(study, jobs)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps({"study": name, "summary": summary, "jobs": jobs}))
    if png:
        plot(summary, jobs, png, study)
        if any(c[summary["verdict_split"]]["verdict"] != "not tested" for c in summary["claims"]):
            plot_claims(summary, png.with_name(f"{png.stem}_claims.png"))
    return markdown(summary)


# ------------------------------------------------------------------------------------------------ the verdict table
TASKS = {"sst5": "SST-5, original data (8,544 sentences)", "sst2": "SST-2's pool of 67,349 phrases (redundant)"}
FINDINGS = ("selection", "objective", "adoption", "combined")  # the paper's findings, in the verdict table's order


def verdict_rows(name: str, summary: dict) -> list[dict]:
    """One row per claim of a study (its name and what it says), the comparisons that test it on the verdict split:
    what each decided, with the setting they share."""
    study, split = STUDIES[name], summary["verdict_split"]
    variants, rows = summary["variants"], {}
    for c in summary["claims"]:
        if c[split]["verdict"] != "not tested":
            rows.setdefault((c["claim"], c["says"]), []).append(c)
    out = []
    for (claim, says), claims in rows.items():
        arms = list(dict.fromkeys(a for c in claims for a in (c["baseline"], c["variant"])))
        recipes: dict[str, list[str]] = {}
        for arm in arms:
            recipe = variants[arm]["recipe"]
            recipes.setdefault(f"lr {recipe['distill.lr']:g}, {recipe['distill.epochs']} epochs", []).append(arm)
        ns = sorted({c[split]["n"] for c in claims})
        seeds = f"{ns[0]} seeds" if len(ns) == 1 else f"{ns[0]}–{ns[-1]} seeds (n per comparison)"
        recipe = ("student " + next(iter(recipes)) if len(recipes) == 1 else
                  "student " + "; ".join(f"{', '.join(a)}: {r}" for r, a in recipes.items()))
        where = "verdict on test" if split == "test" else "verdict on dev (no test split)"
        setting = "; ".join(filter(None, (TASKS.get(summary["task"], summary["task"]), study.setting, where, seeds,
                                          _precisions({"variants": {a: variants[a] for a in arms}}), recipe)))
        out.append({"finding": study.title, "claim": claim, "says": says, "setting": setting, "comparisons": claims,
                    "split": split, "collapsed": _collapse_cell({a: variants[a]["collapsed"][split] for a in arms}),
                    "n_max": ns[-1]})
    return sorted(out, key=lambda row: row["claim"])


def _collapse_cell(flags: dict[str, dict]) -> str:
    """The arms of a row with a job that predicts one class, as collapsed jobs / jobs; those not counted."""
    fell = [f"{arm} {_collapse_rate(f)}" for arm, f in flags.items() if any(f.values())]
    unknown = [arm for arm, f in flags.items() if any(v is None for v in f.values())]
    if len(unknown) == len(flags):
        return "not recorded (jobs run before the count)"
    return "; ".join(fell + ([f"not recorded for {', '.join(unknown)}"] if unknown else [])) or "none"


def verdict_table(sources: list[Path]) -> str:
    """The verdict of every claim of the paper's findings, one row per claim, from study JSONs saved by ``--save``
    (``python -m dkd.studies.report --verdicts <json>…``; the JSONs of one study are read as one, so that added seeds
    pool with the first); the findings without one are said to be not run, and the comparisons a study defines but
    whose arms did not run are counted under the table."""
    pts = lambda x: f"{100 * x:+.2f}".replace("-", "−")  # noqa: E731 - differences in points
    lines = ["| finding | claim | setting | verdict | d, points [95% t interval] | one class on the verdict split "
             "(jobs of an arm) |", "|---|---|---|---|---|---|"]
    by_study: dict[str, list[Path]] = {}
    for source in sources:
        try:
            name = json.loads(source.read_text())["study"]
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"{source}: not a study JSON saved by python -m dkd.studies.report --study … --save "
                            f"({err}).") from None
        if name not in STUDIES:
            raise UserError(f"{source}: study {name!r} is none of {', '.join(STUDIES)}.")
        by_study.setdefault(name, []).append(source)
    left_out = []
    for name, paths in by_study.items():
        summary = summarise(STUDIES[name], load_jobs(paths))
        tested = {(c["variant"], c["baseline"], c["kind"]) for c in summary["claims"]
                  if c[summary["verdict_split"]]["verdict"] != "not tested"}
        untested = [c for c in STUDIES[name].claims if (c.variant, c.baseline, c.kind) not in tested]
        if untested:
            shown = ("; ".join(f"{c.variant} − {c.baseline}" for c in untested) if len(untested) <= 3
                     else f"{len(untested)} comparisons, claims {', '.join(dict.fromkeys(c.name for c in untested))}")
            left_out.append(f"{STUDIES[name].title}: {shown}")
        for row in verdict_rows(name, summary):
            claims, split = row["comparisons"], row["split"]
            common = len({c["baseline"] for c in claims}) == 1
            label = lambda c: (c["variant"] if common and len(claims) > 1  # noqa: E731
                               else f"{c['variant']} − {c['baseline']}")
            by_verdict: dict[str, list[str]] = {}
            for c in claims:
                by_verdict.setdefault(f"**{c[split]['verdict']}**{_gloss(c[split], c['kind'], c['delta'])}",
                                      []).append(label(c))
            verdict = "; ".join(f"{v} for {', '.join(labels)}" if len(claims) > 1 else v
                                for v, labels in by_verdict.items())
            d = "; ".join(
                f"{label(c)} {pts(c[split]['mean'])} [{pts(c[split]['low'])}, {pts(c[split]['high'])}]"
                + (f" (n = {c[split]['n']})" if c[split]["n"] != row["n_max"] else "")
                + (" †" if c[split]["collapse"] else "") for c in claims)
            against = f" (against {claims[0]['baseline']})" if common and len(claims) > 1 else ""
            lines.append(f"| {row['finding']} | {row['claim']}: {row['says']}{against} | {row['setting']} | "
                         f"{verdict} | {d} | {row['collapsed']} |")
    for name in FINDINGS:
        if name not in by_study:
            study = STUDIES[name]
            claims = ", ".join(dict.fromkeys(c.name for c in study.claims))
            lines.append(f"| {study.title} | {claims} | — | **not run yet** | — | — |")
    lines += ["", "† an arm of the comparison predicts one class in a paired seed."]
    if left_out:
        lines.append(f"Defined by a study but not run, so not in the table: {'; '.join(left_out)}.")
    return "\n".join(lines) + "\n"
