"""The reproduction report (``python -m dkd.studies.report --study <name> <multirun folders or JSON>``): a study's
finished jobs summarised into its verdicts (:func:`summarise`), then its Markdown, plots and saved JSON
(:func:`report`), and the verdict table of every finding (:func:`verdict_table`).

The study's variants and claims are its design (:mod:`dkd.studies.design`); its jobs are read and checked to compare
(:mod:`dkd.studies.jobs`); each claim is tested by the paired rule of :mod:`dkd.studies.verdict`. A study is one
finding of the paper (or one check of ours); on each split its claims whose arms pair in two or more seeds there
(pending ones included) are one family for Holm's correction. ``--save`` keeps what the tables
(:mod:`dkd.studies.tables`) and plots (:mod:`dkd.studies.plots`) need as one JSON under docs/, so that they can be
rebuilt without the outputs.
"""
from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from dkd.errors import UserError
from dkd.loggers import CLASS_SHARES
from dkd.studies.design import FIRST_SEEDS, MOST_SEEDS, STUDIES, Study, run_order
from dkd.studies.jobs import (
    check_same_examples,
    check_same_setting,
    collapsed_on,
    flatten,
    gflops_per_instance,
    gflops_per_instance_run,
    load_jobs,
    recipe_of,
    right_answers,
    teacher_sets,
    variant_of,
    verdict_split,
)
from dkd.studies.labels import Labels, NoLabels, class_recall
from dkd.studies.plots import plot, plot_claims, plot_classes
from dkd.studies.tables import markdown, verdict_markdown
from dkd.studies.verdict import NotFinite, paired_difference, two_level_bootstrap, verdicts


def _mean_known(values) -> float | None:
    """The mean of the values that are not None; None when none is known (jobs run before FLOPs were counted)."""
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def better_of(candidates: tuple[str, ...], variants: dict) -> str:
    """The candidate baseline with the higher mean dev score over the seeds every candidate has (the first on a tie,
    or where none is shared): "the better single teacher", the harder baseline, chosen once for the study on the
    split that chooses checkpoints, never on the verdict split."""
    if len(candidates) == 1:
        return candidates[0]
    seeds = set.intersection(*(set(variants[b]["dev"]) for b in candidates))
    if not seeds:
        return candidates[0]
    return max(candidates, key=lambda b: statistics.mean(variants[b]["dev"][s] for s in seeds))


def summarise(study: Study, jobs: list[dict]) -> dict:
    """Per variant: seeds, metrics, cost, which jobs collapsed; per claim and split: the paired t interval, the
    two-level bootstrap, the collapse flag and the verdict (:func:`dkd.studies.verdict.verdicts`), or ``not tested``
    where fewer than two seeds pair; where the seeds learnt from teachers fine-tuned apart (``teacher_sets``, one entry
    per set, :func:`dkd.studies.jobs.teacher_sets`), also the mean difference under each set (``by_teachers``).
    ``planned``: the paired seeds design v2 reads the claim at, five, or ten where the interval of the first five is
    wider than ±δ; below them the verdict is ``pending`` and what the rule reads so far is its ``reading`` (the claim
    stays in its Holm family, as it will be when read). ``families``: per split, how many claims have two or more
    paired seeds there (pending ones included), the Holm family they are corrected in. ``verdict_split``: the split
    whose verdicts count."""
    check_same_setting(study, jobs)
    check_same_examples(jobs)
    by_variant: dict[str, dict[int, dict]] = {}
    for job in jobs:
        seeds = by_variant.setdefault(variant_of(study, job), {})
        seed = job["metrics"]["seed"]
        if seed in seeds:
            raise UserError(f"{job['job']} and {seeds[seed]['job']} are the same variant and seed: give each once.")
        seeds[seed] = job
    sets = teacher_sets(jobs)
    order = [v for v in study.variants if v in by_variant]
    variants = {}
    for label in order:
        seeds = by_variant[label]
        dev = {s: j["metrics"]["dev"]["dev/score"] for s, j in seeds.items()}
        test = {s: j["predictions"]["test"]["metrics"]["test/acc"] for s, j in seeds.items()
                if "test" in j.get("predictions", {})}
        variants[label] = {
            "seeds": sorted(dev), "dev": dev, "test": test,
            "collapsed": {split: {s: collapsed_on(seeds[s], split) for s in sorted(scores)}
                          for split, scores in (("dev", dev), ("test", test))},
            "gflops_per_instance": _mean_known(map(gflops_per_instance, seeds.values())),
            "gflops_per_instance_run": _mean_known(map(gflops_per_instance_run, seeds.values())),
            "wall_min": statistics.mean(j["metrics"]["wall_time_s"] for j in seeds.values()) / 60,
            "examples_per_s": statistics.mean(j["metrics"]["train_examples_per_s"] or 0 for j in seeds.values()),
            "selected": statistics.mean(j["metrics"]["decisions"].get("sampler_selected", 1.0)
                                        for j in seeds.values()),
            "paper": study.paper.get(label, ""), "recipe": recipe_of(label, list(seeds.values())),
            "first_epoch_terms": _mean_terms([j.get("first_epoch_terms", {}) for j in seeds.values()]),
            "teacher_gflops": _mean_terms([teacher_gflops(j) for j in seeds.values()]),
            "alpha": {k: flatten(next(iter(seeds.values()))["config"]).get(f"weighting.{k}")
                      for k in ("alpha_kd", "alpha_pt")}}
    claims, families = [], {"dev": [], "test": []}  # per split, the claims of 2+ paired seeds: one Holm family
    for c in study.claims:
        if c.variant not in variants or any(b not in variants for b in c.baselines):
            continue
        baseline = better_of(c.baselines, variants)
        row = {"claim": c.name, "says": c.says, "variant": c.variant, "baseline": baseline, "kind": c.kind,
               "delta": c.delta, **({"chosen_from": list(c.baselines)} if len(c.baselines) > 1 else {})}
        for split in ("dev", "test"):
            a, b = variants[baseline][split], variants[c.variant][split]
            paired = run_order(set(a) & set(b))
            if len(paired) < 2:
                row[split] = {"n": len(paired), "verdict": "not tested"}
                continue
            try:
                planned, half5 = FIRST_SEEDS, None
                if len(paired) >= FIRST_SEEDS:  # the ten-seed rule reads the interval of the first five seeds run
                    low5, high5 = paired_difference(*({s: x[s] for s in paired[:FIRST_SEEDS]} for x in (a, b))
                                                    ).interval()
                    half5 = (high5 - low5) / 2
                    planned = MOST_SEEDS if half5 > c.delta else FIRST_SEEDS
                # read on the planned seeds, no more: its arms may have more for other claims (design v2's rule)
                seeds = sorted(paired[:planned])
                p = paired_difference({s: a[s] for s in seeds}, {s: b[s] for s in seeds})
            except NotFinite as err:
                named = "; ".join(f"seed {s}: {by_variant[baseline][s]['job']} and {by_variant[c.variant][s]['job']}"
                                  for s in err.seeds)
                raise UserError(f"{study.title}, claim {c.name} ({c.variant} − {baseline}) on {split}: {err}. "
                                f"The jobs ({named}) have a metric that is NaN or infinite: rerun or leave them out."
                                ) from err
            low, high = p.interval()
            fell = {arm: [s for s in seeds if variants[label]["collapsed"][split][s]]
                    for arm, label in (("variant", c.variant), ("baseline", baseline))}
            unknown = any(variants[label]["collapsed"][split][s] is None
                          for label in (c.variant, baseline) for s in seeds)
            row[split] = {"n": p.n, "mean": p.mean, "low": low, "high": high, "constant": p.se == 0, "collapsed": fell,
                          # a flag: an arm predicts one class in a paired seed (None: not recorded, none seen)
                          "collapse": True if fell["variant"] or fell["baseline"] else None if unknown else False}
            row[split]["planned"] = planned
            if half5 is not None:
                row[split]["first_stage_half"] = half5
            if len(sets) > 1:  # a teacher fine-tuned again and moved: the mean difference under each beside the pooled
                row[split]["by_teachers"] = [
                    {"set": i, "n": len(mine), "mean": statistics.mean(b[s] - a[s] for s in mine)}
                    for i, entry in enumerate(sets, 1) if (mine := [s for s in seeds if s in entry["seeds"]])]
            if len(paired) > p.n:  # paired seeds run for other claims, beyond this claim's sample size
                row[split]["not_read"] = len(paired) - p.n
            base = [right_answers(by_variant[baseline][s], split) for s in seeds]
            var = [right_answers(by_variant[c.variant][s], split) for s in seeds]
            if all(x is not None for x in base + var):
                row[split]["bootstrap"] = two_level_bootstrap(base, var)
            families[split].append((row[split], p, c))
        claims.append(row)
    for family in filter(None, families.values()):
        for (cell, _, _), v in zip(family, verdicts([(p, c.kind, c.delta) for _, p, c in family])):
            cell.update(asdict(v))
            if cell["n"] < cell["planned"]:  # the design's sample size: what fewer seeds say is a reading, no verdict
                cell["reading"], cell["verdict"] = cell["verdict"], "pending"
    return {"title": study.title, "variants": variants, "claims": claims, "teacher_sets": sets,
            "verdict_split": verdict_split(jobs), "families": {split: len(f) for split, f in families.items()},
            "commits": sorted({(j["metrics"].get("code") or {}).get("commit", "unrecorded")[:7] for j in jobs}),
            "kernels": dict(sorted(Counter((j["metrics"].get("kernels") or {}).get("aten", "not recorded")
                                           for j in jobs).items())),
            "task": jobs[0]["metrics"]["task"]}


def teacher_gflops(job: dict) -> dict[str, float]:
    """GFLOPs per training example each teacher was asked for (cache hits included: the method's cost; hard adoption
    asks each teacher for its own rows only)."""
    asked = ((job["metrics"].get("flops") or {}).get("teacher_per_example") or {})
    return {role: v for role, v in asked.items() if role != "all_teachers_on_every_row"}


def _mean_terms(per_job: list[dict]) -> dict[str, float]:
    names = set().union(*per_job) if per_job else set()
    return {n: statistics.mean(t[n] for t in per_job if n in t) for n in sorted(names)}


def report(name: str, sources: list[Path], save: Path | None = None, png: Path | None = None,
           data_dir: Path | None = None) -> str:
    """The study's Markdown (tables, recall per class, the KD rows' classes and verdicts); ``save``: its jobs as one
    JSON; ``png``: its plot, and beside it the claims' paired differences (``<png>_claims.png``,
    :func:`plot_claims`) and the recall per class (``<png>_classes.png``, :func:`plot_classes`); ``data_dir``: the
    task's folder, for the labels of the recall per class (default: where the jobs were evaluated, under this
    checkout)."""
    if name not in STUDIES:
        raise UserError(f"--study {name}: known studies are {', '.join(STUDIES)}.")
    study = STUDIES[name]
    jobs = load_jobs(sources)
    summary = summarise(study, jobs)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps({"study": name, "summary": summary, "jobs": jobs}))
    classes = per_class(study, jobs, summary["verdict_split"], data_dir)
    asked = asked_shares(study, jobs)
    if png:
        plot(summary, jobs, png, study)
        if any(c[summary["verdict_split"]]["verdict"] != "not tested" for c in summary["claims"]):
            plot_claims(summary, png.with_name(f"{png.stem}_claims.png"))
        if isinstance(classes, dict):
            plot_classes(classes, f"{summary['title']} — {summary['task']}", png.with_name(f"{png.stem}_classes.png"))
    return markdown(summary, classes, asked)


def per_class(study: Study, jobs: list[dict], split: str, data_dir: Path | None) -> dict | str | None:
    """The recall of each class on ``split`` per variant (:func:`dkd.studies.labels.class_recall`), or why it is not
    shown (the task's files missing or not the labels the jobs were scored against, or some jobs without right
    answers there); None where no job has right answers on ``split`` (a regression task, or jobs not evaluated)."""
    unscored = [job["job"] for job in jobs if right_answers(job, split) is None]
    if len(unscored) == len(jobs):
        return None
    if unscored:
        return f"not shown, jobs without right answers on {split}: {', '.join(unscored)}"
    jobs_of: dict[str, list[dict]] = {}
    for job in jobs:
        jobs_of.setdefault(variant_of(study, job), []).append(job)
    try:
        return class_recall({v: jobs_of[v] for v in study.variants if v in jobs_of}, split, Labels(data_dir))
    except NoLabels as err:
        return f"not shown, the labels are missing: {err}"
    except UserError as err:  # a descriptive table: its labels' trouble is said there, the verdicts still made
        return f"not shown, {err}"


def asked_shares(study: Study, jobs: list[dict]) -> dict:
    """Per variant whose every job logged them (``sampler_class_<c>``, jobs of 7a2908a on): the share of the KD rows,
    the rows the teacher was asked about, in each gold class c of the training data, mean over its jobs (each job's:
    a mean over its steps with KD rows). Full KD asks about every row: its shares are the training data's."""
    prefix, per_variant = CLASS_SHARES.removeprefix("train/"), {}
    for job in jobs:
        shares = {int(k.removeprefix(prefix)): v for k, v in job["metrics"].get("decisions", {}).items()
                  if k.startswith(prefix)}
        per_variant.setdefault(variant_of(study, job), []).append(shares)
    return {v: {c: statistics.mean(shares.get(c, 0.0) for shares in per_variant[v])
                for c in sorted(set().union(*per_variant[v]))}
            for v in study.variants if v in per_variant and all(per_variant[v])}


def verdict_table(sources: list[Path]) -> str:
    """The verdict table (:func:`dkd.studies.tables.verdict_markdown`) from study JSONs saved by ``--save``
    (``python -m dkd.studies.report --verdicts <json>…``): the JSONs of one study and task are read as one, so that
    added seeds pool with the first; one study on two tasks (finding 2 on SST-5 and on SST-2's pool) gives rows per
    task."""
    by_setting: dict[tuple[str, str], list[Path]] = {}
    for source in sources:
        try:
            data = json.loads(source.read_text())
            name, task = data["study"], data["jobs"][0]["metrics"]["task"]
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise UserError(f"{source}: not a study JSON saved by python -m dkd.studies.report --study … --save "
                            f"({err}).") from None
        if name not in STUDIES:
            raise UserError(f"{source}: study {name!r} is none of {', '.join(STUDIES)}.")
        by_setting.setdefault((name, task), []).append(source)
    return verdict_markdown([(name, summarise(STUDIES[name], load_jobs(paths)))
                             for (name, _), paths in by_setting.items()])
